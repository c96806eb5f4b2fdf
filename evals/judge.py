"""`judge`: an LLM compares the base model's answer with the tuned one, through any
OpenAI-compatible endpoint (the generate stage's client: retries, backoff, the response cache).

Judges favour whichever answer they read first or second. So each pair is judged twice, the
answers swapped: a pair counts as won only when both orders name the same answer; when they
disagree, it is `inconsistent` and counts as a tie. Identical answers are a tie without asking.
A malformed answer from the judge is counted, never fatal. Valid answers are cached in
`<run dir>/cache/judge.sqlite`, so a rerun pays for nothing twice; a malformed one is not kept,
so the next run (`--force` included) asks again.
"""

from __future__ import annotations

from dataclasses import dataclass

from curate.errors import CurateError
from curate.evals.examples import EvalExample, read_examples, record_samples, require_examples
from curate.generation import object_schema
from curate.options import option
from curate.plugins.generate.batch import read_answer
from curate.plugins.generate.cache import Answer, ResponseCache
from curate.plugins.generate.endpoint import EndpointOptions
from curate.training import Evaluation, TrainContext

ORDERS = (("base", "tuned"), ("tuned", "base"))
"""Which side is answer A and which answer B, in the two judgings of a pair."""
OUTCOMES = ("tuned", "base", "tie", "inconsistent", "malformed")
SCHEMA = object_schema(reason="string", winner={"type": "string", "enum": ["A", "B", "tie"]})
CRITERIA = ("Which answer serves the user better: correct, helpful, and to the point? Judge the"
            " content, not the length or the style.")


@dataclass(kw_only=True)
class JudgeOptions(EndpointOptions):
    criteria: str = option(CRITERIA, help="what the judge is asked to compare")
    show_reference: bool = option(True, help="show the judge the held-out reference answer")
    max_examples: int = option(50, min=1, help="held-out prompts judged (each pair twice)")
    sources: list[str] = option([], help="only held-out examples from these sources")
    max_new_tokens: int = option(128, min=1, help="longest answer generated, in tokens")
    batch_size: int = option(8, min=1, help="prompts generated at once")
    max_answer_tokens: int = option(256, min=1, help="longest judge answer, in tokens")


class JudgeEval(Evaluation):
    name = "judge"
    Options = JudgeOptions
    version = "1"
    uses_eval_split = True

    @classmethod
    def check_options(cls, options: JudgeOptions) -> None:
        options.check()

    def evaluate(self, options: JudgeOptions, context: TrainContext) -> dict:
        from curate.evals.generation import answers
        from curate.evals.model import load_tuned

        examples = read_examples(context.eval_file, options.sources)[:options.max_examples]
        require_examples(examples, context.eval_file, options.sources)
        tuned = load_tuned(context.run_dir)
        said = answers(tuned, examples, options.max_new_tokens, options.batch_size,
                       context.log)
        pairs = [Pair(e, said["base"][i], said["tuned"][i]) for i, e in enumerate(examples)]
        outcomes = judge_pairs(pairs, options, context)
        result = tally(outcomes)
        record_samples(context.run_dir, context.evaluation or self.name, tuned.digest, [
            {"id": p.example.id, "source": p.example.source, "prompt": p.example.question,
             "reference": p.example.reference, "base": p.base, "tuned": p.tuned,
             "verdicts": outcome} for p, outcome in zip(pairs, outcomes)])
        context.log(summary_line(result))
        if result["win_rate"] is None:
            context.log(unjudged_warning(result))
        return result


@dataclass
class Pair:
    example: EvalExample
    base: str
    tuned: str

    def answer(self, side: str) -> str:
        return self.base if side == "base" else self.tuned


def judge_pairs(pairs: list[Pair], options: JudgeOptions, context: TrainContext) -> list[dict]:
    """Per pair {"outcome", "orders": [winner side of each order, or None when malformed]}."""
    asked = [pair for pair in pairs if pair.base != pair.tuned]
    exchanges = iter(send([plan(pair, order, options, context.seed)
                           for pair in asked for order in ORDERS], options, context))
    outcomes = []
    for pair in pairs:
        if pair.base == pair.tuned:
            outcomes.append({"outcome": "tie", "orders": [], "identical": True})
            continue
        winners = [winner(next(exchanges), order) for order in ORDERS]
        outcomes.append({"outcome": outcome(winners), "orders": winners})
    return outcomes


def plan(pair: Pair, order: tuple[str, str], options: JudgeOptions, seed: int):
    from curate.generation import GenerationRequest
    from curate.plugins.generate.batch import Planned

    messages = [{"role": "system", "content": "You are an impartial judge comparing two answers"
                                              " to the same request."},
                {"role": "user", "content": judge_prompt(pair, order, options)}]
    params = {"temperature": 0.0, "max_tokens": options.max_answer_tokens, "seed": seed}
    keyed = {"base_url": options.base_url, "model": options.model, "messages": messages,
             "schema": SCHEMA}
    return Planned(GenerationRequest(messages, SCHEMA), messages, params, keyed)


def judge_prompt(pair: Pair, order: tuple[str, str], options: JudgeOptions) -> str:
    reference = (f"[Reference answer]\n{pair.example.reference}\n\n"
                 if options.show_reference else "")
    return (f"{options.criteria}\n\n[Request]\n{pair.example.question}\n\n{reference}"
            f"[Answer A]\n{pair.answer(order[0])}\n\n[Answer B]\n{pair.answer(order[1])}\n\n"
            f"Reply with one JSON object and nothing else: {{\"reason\": one sentence,"
            f" \"winner\": \"A\", \"B\" or \"tie\"}}.")


def send(planned: list, options: JudgeOptions, context: TrainContext) -> list:
    from curate.plugins.generate.batch import Budget, RequestBatch

    if not planned:
        return []
    endpoint = options.endpoint()
    cache = JudgementCache(context.run_dir / "cache" / "judge.sqlite")
    try:
        return RequestBatch(endpoint, cache, Budget(None, None), options.concurrency, 1).run(
            planned)
    except CurateError as error:
        raise CurateError(f"eval judge: {error} (judgements received so far are cached)") \
            from None
    finally:
        cache.close()


class JudgementCache(ResponseCache):
    """The response cache, holding only judgements that fit SCHEMA: a malformed one is a
    passing failure of the judge, asked again by the next run, never a final answer."""

    def get(self, key: str) -> Answer | None:
        answer = super().get(key)
        if answer is not None and not fits(answer):
            self.forget(key)  # stored before malformed judgements were refused
            return None
        return answer

    def put(self, key: str, request: str, answer: Answer) -> None:
        if fits(answer):
            super().put(key, request, answer)


def fits(answer: Answer) -> bool:
    return read_answer(answer, SCHEMA)[1] is None


def winner(exchange, order: tuple[str, str]) -> str | None:
    """The side the judge preferred in one order ("tie" for neither), None when malformed."""
    if exchange.error is not None:
        return None
    said = exchange.value["winner"]
    return "tie" if said == "tie" else order[0] if said == "A" else order[1]


def outcome(winners: list[str | None]) -> str:
    if None in winners:
        return "malformed"
    return winners[0] if winners[0] == winners[1] else "inconsistent"


def tally(outcomes: list[dict]) -> dict:
    """Counts per outcome, the tuned model's win, loss and tie rates over the judged pairs
    (inconsistent ones count as ties; None when no pair was judged), and how often both orders
    agreed."""
    counts = {name: sum(o["outcome"] == name for o in outcomes) for name in OUTCOMES}
    judged = len(outcomes) - counts["malformed"]
    asked = sum(not o.get("identical") for o in outcomes) - counts["malformed"]
    ties = counts["tie"] + counts["inconsistent"]
    rate = (lambda n: n / judged) if judged else (lambda n: None)
    return {"pairs": len(outcomes), **counts,
            "identical": sum(bool(o.get("identical")) for o in outcomes),
            "win_rate": rate(counts["tuned"]), "loss_rate": rate(counts["base"]),
            "tie_rate": rate(ties),
            "position_consistency": (asked - counts["inconsistent"]) / asked if asked else None,
            **({"incomplete": f"{counts['malformed']} malformed judgements, asked again by the"
                              f" next run"} if counts["malformed"] else {})}


def unjudged_warning(result: dict) -> str:
    return (f"warning: judge: all {result['pairs']} pairs got a malformed judgement, so the win,"
            f" loss and tie rates are null: check that the judge answers the JSON asked for,"
            f" then rerun")


def summary_line(result: dict) -> str:
    consistency = result["position_consistency"]
    agreed = "" if consistency is None else f"; both orders agreed on {consistency:.0%}"
    return (f"judge: tuned won {result['tuned']}, lost {result['base']}, tied"
            f" {result['tie'] + result['inconsistent']} ({result['inconsistent']} inconsistent)"
            f" of {result['pairs']} pairs{agreed}; {result['malformed']} malformed judgements")
