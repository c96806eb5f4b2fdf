import pytest
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier, visit_counts

from curate.plugins.langid_batch import TOP, BatchScorer

TEXTS = [
    "The committee will publish its findings next week after the final review.",
    "Der Ausschuss wird seine Ergebnisse nächste Woche veröffentlichen.",
    "Le comité publiera ses conclusions la semaine prochaine.",
    "El comité publicará sus conclusiones la próxima semana.",
    "Комитет опубликует свои выводы на следующей неделе.",
    "委员会将在下周公布其调查结果。",
    "اللجنة ستنشر نتائجها الأسبوع المقبل",
    "Srpski: komitet će objaviti nalaze sledeće nedelje.",
    "ok",
    "AN UPPER CASE SENTENCE ABOUT THE WEATHER",
    "I love this city. J'adore cette ville et ses rues.",
    "a" * 3000,
]


@pytest.fixture(scope="module")
def identifier():
    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def test_batch_scores_agree_with_py3langid_one_text_at_a_time(identifier):
    batch = BatchScorer(identifier).rank(TEXTS)
    for text, verdict in zip(TEXTS, batch):
        expected = identifier.rank(text)[:TOP]
        if not has_features(identifier, text):  # py3langid answers with a uniform ranking
            assert verdict == [], text
            continue
        assert [code for code, _ in verdict] == [code for code, _ in expected], text
        for (_, found), (_, wanted) in zip(verdict, expected):
            assert found == pytest.approx(wanted, abs=1e-4), text


def test_a_texts_verdict_does_not_depend_on_its_batch(identifier):
    scorer = BatchScorer(identifier)
    alone = [scorer.rank([text])[0] for text in TEXTS]
    assert scorer.rank(TEXTS) == alone
    assert scorer.rank(TEXTS[::-1]) == alone[::-1]


def test_a_text_without_features_has_no_verdict(identifier):
    assert BatchScorer(identifier).rank(["", "   "]) == [[], []]


def has_features(identifier, text):
    return visit_counts(identifier.tk_nextmove, identifier._rowbase, identifier.tk_output,
                        identifier._encode(text)) is not None


def test_a_restricted_scorer_agrees_with_py3langid_set_languages():
    languages = ["en", "de", "fr", "es", "sr", "uz", "zh", "ru", "ar"]  # sr and uz: two columns
    restricted = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    restricted.set_languages(languages)
    batch = BatchScorer(full_identifier(), languages).rank(TEXTS)
    for text, verdict in zip(TEXTS, batch):
        if not has_features(restricted, text):
            continue
        expected = restricted.rank(text)[:TOP]
        assert [code for code, _ in verdict] == [code for code, _ in expected], text
        for (_, found), (_, wanted) in zip(verdict, expected):
            assert found == pytest.approx(wanted, abs=1e-4), text


def test_fewer_languages_than_a_verdict_lists():
    verdict = BatchScorer(full_identifier(), ["en", "de"]).rank([TEXTS[1]])[0]
    assert [code for code, _ in verdict] == ["de", "en"]


def full_identifier():
    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
