"""The `exact-dedupe` and `near-dedupe` stages: remove duplicates, naming for each the record it
duplicates and how similar the two are, and keeping the best member of each cluster by policy.

Both read their input once to hash it (in `[run] workers` processes), decide, then read it again
to yield every record in input order. numpy, datasketch and redis load only when a stage runs.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import ClassVar, Literal

from curate import hookimpl
from curate.errors import CurateError
from curate.options import OptionError, option
from curate.records import Record, Rejection
from curate.stages import Stage

BATCH_SIZE = 512
COMPARED = {"both": "prompt+response", "prompt": "prompt", "response": "response"}
PARTS = {"both": ("prompt", "response"), "prompt": ("prompt",), "response": ("response",)}


@hookimpl
def register_stages(register):
    register(ExactDedupe)
    register(NearDedupe)


@dataclass
class ExactDedupeOptions:
    compare: Literal["prompt", "response", "both"] = option(
        "both", help="what must match: the user turns, the assistant turns, or both (the system"
                     " prompt is never compared)")
    keep: Literal["first", "longest", "score", "human-first"] = option(
        "first", help="which member of a duplicate cluster survives: first in input order, the"
                      " longest response, the highest meta[score_key], or by origin (human,"
                      " rehearsal, generated); ties go to the earlier record")
    score_key: str = option("quality_score", help="the meta key keep = 'score' ranks by; a"
                                                  " missing or non-numeric score ranks last")


@dataclass
class NearDedupeOptions(ExactDedupeOptions):
    shingle: Literal["word", "char"] = option("word", help="shingles of words or of characters")
    shingle_size: int = option(5, min=1, max=64, help="words (or characters) per shingle")
    num_perm: int = option(128, min=16, max=1024, help="MinHash permutations")
    threshold: float = option(0.8, min=0.01, max=1.0,
                              help="the Jaccard similarity of shingle sets at which a record is a"
                                   " near duplicate; measured exactly before anything is removed")
    bands: int | None = option(None, min=2, help="LSH bands (with rows); default: chosen from"
                                                 " threshold for 99% recall at the threshold")
    rows: int | None = option(None, min=1, help="LSH rows per band (with bands)")
    storage: Literal["memory", "redis"] = option("memory", help="where the LSH index lives")
    redis_url: str | None = option(None, help="redis://HOST:PORT/DB, for storage = 'redis'")


def compared_parts(record: Record, compare: str) -> tuple[str, ...]:
    if compare == "both":
        return record.prompt, record.response
    return (record.prompt,) if compare == "prompt" else (record.response,)


class DedupeStage(Stage):
    """Two passes over the input: `cluster` hashes it and picks survivors, then every record is
    yielded in input order, kept or rejected with the id of the record it duplicates."""

    reason: ClassVar[str]
    method: ClassVar[str]

    @classmethod
    def check_options(cls, options: ExactDedupeOptions) -> None:
        if options.keep == "score" and not options.score_key.strip():
            raise OptionError("score_key", "keep = \"score\" ranks by this meta key: name one"
                                           " (e.g. \"quality_score\", kept with meta_columns)")

    def process(self, records):
        from curate.plugins.dedupe_index import RecordFacts

        facts = RecordFacts(self.options.score_key)
        self._buffer: list[Record] | None = [] if self.context.reread is None else None
        duplicate_of, similarity = self.cluster(self._batches(records, facts), facts)
        yield from self._verdicts(facts, duplicate_of, similarity)
        if self.options.keep == "score" and len(facts) and not facts.scored:
            self.context.log(f"warning: {self.context.name}: keep = \"score\", but no record has"
                             f" a numeric meta.{self.options.score_key}, so each cluster kept its"
                             f" first copy: keep the data column with meta_columns ="
                             f" [\"{self.options.score_key}\"] in its [[sources]] table")

    def cluster(self, batches, facts):
        """(duplicate_of, similarity) per record, duplicate_of -1 for a kept record."""
        raise NotImplementedError

    def _batches(self, records, facts):
        batch = []
        for record in records:
            facts.add(record)
            if self._buffer is not None:
                self._buffer.append(record)
            batch.append(compared_parts(record, self.options.compare))
            if len(batch) == BATCH_SIZE:
                yield batch
                batch = []
        if batch:
            yield batch

    def _again(self):
        """The input once more (kept in memory only when run without a reread)."""
        return iter(self._buffer) if self._buffer is not None else self.context.reread()

    def _verdicts(self, facts, duplicate_of, similarity):
        from curate.plugins.dedupe_index import cluster_sizes

        sizes = cluster_sizes(duplicate_of)
        count = 0
        for index, record in enumerate(self._again()):
            if index >= len(facts) or record.id != facts.ids[index]:
                raise RuntimeError(f"stage '{self.context.name}': its input changed between"
                                   f" passes at record {index}")
            count += 1
            target = int(duplicate_of[index])
            yield record if target < 0 else self._rejection(
                record, facts, (index, target), float(similarity[index]), int(sizes[target]))
        if count != len(facts):
            raise RuntimeError(f"stage '{self.context.name}': read {len(facts)} records, then"
                               f" {count} on the second pass")

    def _rejection(self, record: Record, facts, pair: tuple[int, int], similarity: float,
                   size: int):
        # Exact copies share their id, so the survivor's place is what tells it apart.
        target = pair[1]
        survivor, place = facts.ids[target], facts.places[target]
        evidence = {"duplicate_of": survivor, "duplicate_of_from": place,
                    "similarity": similarity, "method": self.method, "cluster_size": size,
                    "compare": self.options.compare, "keep": self.options.keep}
        named = f"{survivor} from {place}" if place else survivor
        evidence.update(self.measured(*pair))
        detail = self.detail(named, evidence, self.kept_by(facts.has_score(target)))
        return Rejection(record, self.reason, detail, evidence=evidence)

    def measured(self, removed: int, survivor: int) -> dict:
        """Evidence beyond the common keys for the removal of `removed` for `survivor`."""
        return {}

    def detail(self, survivor: str, evidence: dict, kept_by: str) -> str:
        raise NotImplementedError

    def kept_by(self, survivor_scored: bool) -> str:
        key = self.options.score_key
        if self.options.keep == "score" and not survivor_scored:
            # The survivor ranks first: with no score, no copy of it has one.
            return f"the first: no copy has a numeric meta.{key}"
        return {"first": "the first", "longest": "the longest response",
                "score": f"the highest meta.{key}",
                "human-first": "by origin, human first"}[self.options.keep]


class ExactDedupe(DedupeStage):
    """Records whose compared text is the same up to presentation (`minhash.exact_form`)."""

    name = "exact-dedupe"
    Options = ExactDedupeOptions
    version = "3"
    reason = "exact-duplicate"
    method = "exact"

    def cluster(self, batches, facts):
        import numpy as np

        from curate.plugins.dedupe_index import choose_survivors, group_by_key, ordered_map
        from curate.plugins.minhash import exact_keys

        keys = np.concatenate([np.zeros((0, 2), dtype=np.uint64),
                               *ordered_map(exact_keys, batches, self.context.workers)])
        groups = group_by_key(keys, np.ones(len(keys), dtype=bool))
        return choose_survivors(groups, facts.ranks(self.options.keep))

    def detail(self, survivor, evidence, kept_by):
        return (f"exact duplicate of {survivor}: same {COMPARED[self.options.compare]} after"
                f" normalising Unicode (NFKC), case, whitespace, curly quotes and emphasis marks;"
                f" {evidence['cluster_size']} copies, kept {kept_by}")


class NearDedupe(DedupeStage):
    """MinHash signatures, LSH candidates, and an exact Jaccard check of each compared part of
    every candidate pair."""

    name = "near-dedupe"
    Options = NearDedupeOptions
    version = "3"
    reason = "near-duplicate"
    method = "minhash"

    @classmethod
    def check_options(cls, options: NearDedupeOptions) -> None:
        super().check_options(options)
        if (options.bands is None) != (options.rows is None):
            missing = "rows" if options.rows is None else "bands"
            raise OptionError(missing, "bands and rows go together: set both, or neither to"
                                       " derive them from threshold")
        if options.bands is not None and options.bands * options.rows > options.num_perm:
            raise OptionError("bands", f"bands x rows = {options.bands} x {options.rows} ="
                                       f" {options.bands * options.rows} is more than num_perm"
                                       f" = {options.num_perm}")
        _check_storage(options)

    def cluster(self, batches, facts):
        import numpy as np

        from curate.plugins import dedupe_index
        from curate.plugins.minhash import ShingleSpec

        options = self.options
        redis = self._redis()
        spec = ShingleSpec(options.shingle, options.shingle_size, options.num_perm, strict=True)
        texts = dedupe_index.SpilledTexts(self.context.work_dir)
        try:
            keys, counts, signatures = self._signatures(batches, texts, spec)
            groups = dedupe_index.group_by_key(keys, counts > 0)
            distinct = np.flatnonzero(groups == np.arange(len(groups)))
            pairs = distinct[self._candidates(signatures, distinct, redis)]
            del signatures
            width = 2 if options.compare == "both" else 1
            *edges, measures = dedupe_index.verified_edges(pairs, texts, width, spec,
                                                           options.threshold, self.context.workers)
        finally:
            texts.close()
        self._groups = groups
        self._measures = {(first, second): found for first, second, found
                          in zip(edges[0], edges[1], measures)}
        return dedupe_index.choose_survivors(groups, facts.ranks(options.keep), edges)

    def _signatures(self, batches, texts, spec):
        """Every record's text key, shingle count and signature, through the signature cache."""
        from curate.plugins import dedupe_index

        context = self.context
        cache = dedupe_index.SignatureCache(context.work_dir,
                                            spec.cache_key(self.options.compare), spec.num_perm)
        spilled = (_spill(texts, batch) for batch in batches)
        numbers, keys, counts, signatures, fresh = dedupe_index.sign(spilled, cache, spec,
                                                                     context.workers)
        cache.save(numbers, keys, counts, signatures, fresh)
        context.log(f"{context.name}: hashed {int(fresh.sum()):,} records, reused"
                    f" {int((~fresh).sum()):,} signatures from the cache")
        return keys, counts, signatures

    def _candidates(self, signatures, members, redis):
        from curate.plugins import minhash

        options = self.options
        bands, rows = (options.bands, options.rows) if options.bands else minhash.lsh_bands(
            options.threshold, options.num_perm)
        if redis is not None:
            return minhash.redis_candidates(signatures[members], bands, rows, redis)
        return minhash.band_candidates(signatures, members, bands, rows)

    def measured(self, removed, survivor):
        """Each part's Jaccard and the numbers only one of the two has (none for records of
        one exact form)."""
        groups = self._groups[removed], self._groups[survivor]
        found = self._measures.get((min(groups), max(groups)))
        names = PARTS[self.options.compare]
        if found is None:
            parts, only_removed, only_kept = (1.0,) * len(names), (), ()
        elif groups[0] < groups[1]:
            parts, only_removed, only_kept = found
        else:
            parts, only_kept, only_removed = found
        return {**{f"{name}_similarity": value for name, value in zip(names, parts)},
                "numbers_only_in_removed": list(only_removed),
                "numbers_only_in_kept": list(only_kept)}

    def detail(self, survivor, evidence, kept_by):
        options = self.options
        measured = ", ".join(f"{name} {evidence[f'{name}_similarity']:.3f}"
                             for name in PARTS[options.compare])
        each = "each " if options.compare == "both" else ""
        numbers = "".join(f"; numbers only in the {side} record: {', '.join(found)}"
                          for side in ("removed", "kept")
                          if (found := evidence[f"numbers_only_in_{side}"]))
        return (f"near duplicate of {survivor} (Jaccard {measured}; {each}>="
                f" {options.threshold:g}, {options.shingle} {options.shingle_size}-shingles"
                f"{numbers}); cluster of {evidence['cluster_size']}, kept {kept_by}")

    def _redis(self) -> dict | None:
        """redis.Redis arguments for storage = 'redis', once the server answers."""
        if self.options.storage != "redis":
            return None
        import redis

        params = redis_params(self.options.redis_url)
        try:
            redis.Redis(**params, socket_connect_timeout=5).ping()
        except (redis.exceptions.RedisError, OSError) as error:
            raise CurateError(f"stage '{self.context.name}': cannot reach Redis at"
                              f" {self.options.redis_url}: {error}") from None
        return params


def _spill(texts, batch: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    texts.add(batch)
    return batch


def _check_storage(options: NearDedupeOptions) -> None:
    if options.storage == "memory":
        if options.redis_url is not None:
            raise OptionError("redis_url", "only used with storage = 'redis'")
        return
    if options.redis_url is None:
        raise OptionError("redis_url", "storage = 'redis' needs redis_url ="
                                       " 'redis://HOST:PORT/DB'")
    try:
        redis_params(options.redis_url)
    except ValueError as error:
        raise OptionError("redis_url", str(error)) from None


def redis_params(url: str) -> dict:
    """redis://[[user]:password@]host[:port][/db] as redis.Redis keyword arguments."""
    parsed = urllib.parse.urlsplit(url)
    try:
        port, db = parsed.port or 6379, int(parsed.path.strip("/") or 0)
    except ValueError:
        port = db = None
    if parsed.scheme != "redis" or not parsed.hostname or port is None:
        raise ValueError(f"expected redis://HOST[:PORT][/DB], found {url!r}")
    params: dict = {"host": parsed.hostname, "port": port, "db": db}
    if parsed.username:
        params["username"] = urllib.parse.unquote(parsed.username)
    if parsed.password:
        params["password"] = urllib.parse.unquote(parsed.password)
    return params
