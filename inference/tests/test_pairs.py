"""inference.pairs end to end on synthetic generation runs and grading files that validate
against formats/trajectory.py and formats/scores.py."""

import hashlib
import itertools
import json
import os
import random
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from formats import preference
from formats import scores as scores_format
from formats import trajectory as trajectory_format
from formats.config import build, read_yaml
from formats.trajectory import MAX_CALLS_MARKER
from inference import pairs
from inference.pairs import PairsConfig, RunSpec, choose_pairs, pass_at_k

GT = {"0": "12", "1": "30", "2": "7", "3": "100"}


def question(idx: str) -> str:
    return f"Problem {idx}: what is the number? (gt {GT[idx]})"


def solved(idx: str, tag: str, answer: str, obs: str | None = None) -> list[dict]:
    """assistant(code) / user(observation) / assistant(boxed answer): one tool call."""
    return [{"role": "assistant", "content": f"Let me compute ({tag}).\n```python\nprint({answer})\n```"},
            {"role": "user", "content": f"```output\n{obs if obs is not None else answer}\n```"},
            {"role": "assistant", "content": f"The answer is $\\boxed{{{answer}}}$."}]


def max_calls(idx: str, tag: str) -> list[dict]:
    turns = []
    for k in range(6):
        turns += [{"role": "assistant", "content": f"Try {k} ({tag}).\n```python\nprint({k})\n```"},
                  {"role": "user", "content": f"```output\n{k}\n```"}]
    return turns + [{"role": "assistant", "content": MAX_CALLS_MARKER}]


def record(idx: str, sample: int, turns: list[dict], pred: str, stop: str = "answer",
           source: str | None = None, error: str | None = None) -> dict:
    rec = {"id": f"{idx}:{sample}", "idx": idx, "sample": sample, "question": question(idx),
           "gt": GT[idx], "messages": [{"role": "user", "content": question(idx)}] + turns,
           "pred": pred, "stop_reason": stop, "turns": sum(m["role"] == "assistant" for m in turns),
           "prompt_tokens": 20, "generated_tokens": 40, "model": "tiny", "seed": sample,
           "sampling": {"temperature": 1.0, "top_p": 1.0}, "format_version": 1}
    if source:
        rec["source"] = source
    if error:
        rec["error"] = error
    return trajectory_format.validate(rec, "test")


def good(idx, sample, tag, **kw):
    return record(idx, sample, solved(idx, tag, GT[idx]), GT[idx], **kw)


def wrong(idx, sample, tag, **kw):
    bad = str(int(GT[idx]) + 1 + sample)
    return record(idx, sample, solved(idx, tag, bad), bad, **kw)


def mixture() -> tuple[list[dict], list[dict]]:
    """The scenario the counts below are worked out for (see test_end_to_end_paper_defaults).
    Current run: 4 samples per prompt; previous run: 3, of which the config uses 2."""
    cur = [
        good("0", 0, "same"), good("0", 1, "same"), wrong("0", 2, "c2"),
        record("0", 3, solved("0", "c3", GT["0"], obs="NameError: name 'x' is not defined"), GT["0"]),
        *[good("1", s, f"c{s}") for s in range(4)],
        record("2", 0, [{"role": "assistant", "content": f"Easy: $\\boxed{{{GT['2']}}}$"}], GT["2"],
               stop="answer"),
        wrong("2", 1, "c1"),
        record("2", 2, max_calls("2", "c2"), "", stop="max_turns"),
        record("2", 3, solved("2", "c3", GT["2"], obs="IPython kernel error: died"), GT["2"]),
        *[wrong("3", s, f"c{s}") for s in range(4)],
    ]
    prev = [
        wrong("0", 0, "p0"), good("0", 1, "p1"), wrong("0", 2, "p2"),
        good("1", 0, "p0"), good("1", 1, "p1"), good("1", 2, "p2"),
        record("2", 0, [{"role": "assistant", "content": "```python\nprint(1)"}], "", stop="failed",
               error="engine died"),
        good("2", 1, "p1"), wrong("2", 2, "p2"),
        *[wrong("3", s, f"p{s}") for s in range(3)],
    ]
    return cur, prev


def score(rec: dict, version: str = "g1", strict: bool | None = None) -> dict:
    correct = rec["pred"] == rec["gt"]
    out = {"id": rec["id"], "idx": rec["idx"], "sample": rec["sample"], "pred": rec["pred"],
           "gt": rec["gt"], "scores": {"paper": correct, "strict": correct if strict is None else strict},
           "timeouts": [], "grader_version": version, "format_version": 1}
    return scores_format.validate(out, "test")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_run(folder: Path, name: str, recs: list[dict], **score_kw) -> Path:
    path = write_jsonl(folder / f"{name}.jsonl", recs)
    write_jsonl(folder / f"{name}.scores.jsonl", [score(r, **score_kw) for r in recs])
    return path


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    cur, prev = mixture()
    return write_run(tmp_path, "current", cur), write_run(tmp_path, "previous", prev)


def argv_for(runs, out: Path, *extra: str) -> list[str]:
    cur, prev = runs
    spec = (f"runs=[{{path: '{cur}', source: current, max_samples_per_prompt: 20}}, "
            f"{{path: '{prev}', source: previous, max_samples_per_prompt: 2}}]")
    return [spec, f"output={out}", *extra]


def run_cli(runs, out: Path, *extra: str) -> dict:
    pairs.main(argv_for(runs, out, *extra))
    return json.loads((out / "stats.json").read_text())


def config(runs, out: Path, **kw) -> PairsConfig:
    cur, prev = runs
    return PairsConfig(runs=[RunSpec(str(cur), "current", 20), RunSpec(str(prev), "previous", 2)],
                       output=str(out), **kw)


def test_end_to_end_paper_defaults(runs, tmp_path):
    out = tmp_path / "pairs"
    stats = run_cli(runs, out, "--config", str(Path(pairs.__file__).parent / "configs" / "pairs.yaml"))
    t, p = stats["trajectories"], stats["prompts"]
    assert (t["read"], t["used"], t["correct"]) == (28, 24, 13)
    assert [r["used"] for r in stats["runs"]] == [16, 8]
    assert stats["runs"][1]["sources"] == {"previous": 8}
    f = stats["filters"]
    assert {k: v["removed"] for k, v in f.items() if v["removed"]} == {
        "failed_generation": 1, "require_tool_call": 1, "environment_error": 1,
        "correct_error_in_last_observation": 1}
    # The failed trajectory has no tool call either: matched by two rules, charged to the first.
    assert f["require_tool_call"]["matched"] == 2
    assert f["max_turns"] == {"enabled": False, "removed": 0, "matched": 1}
    assert f["max_tokens"]["matched"] is None
    assert (t["after_filters"], t["duplicates_removed"], t["after_dedup"]) == (20, 1, 19)
    assert p == {"total": 4, "with_correct_before_filters": 3, "with_correct": 3,
                 "with_incorrect": 3, "with_pair": 2}
    assert stats["pass_at_k"] == {"k": 6, "prompts": 4, "pass@1": round(13 / 24, 6), "pass@6": 0.75}
    assert stats["sources"]["current"]["pass_at_k"] == {"k": 4, "prompts": 4, "pass@1": 0.5625,
                                                        "pass@4": 0.75}
    assert stats["sources"]["previous"]["pass_at_k"]["pass@2"] == 0.75
    assert stats["dpo"]["rows"] == 2 and stats["dpo"]["prompts_by_pair_count"] == {"0": 2, "1": 2}
    assert stats["dpo"]["prompts"] == 2  # the pipeline carries the model over below two (the trainer's split)
    assert stats["kto"] == {"from": "pairs", "rows": 4, "prompts": 2, "desirable": 2, "desirable_length_capped": 0,
                            "undesirable": 2, "desirable_share": 0.5}
    assert stats["dpo"]["chosen_length_capped"] == 0
    assert stats["bad_lines_skipped"] == 0 and stats["grader_version"] == "g1"

    dpo = load_from_disk(str(out / "dpo"))
    assert dpo.column_names == ["prompt", "chosen", "rejected", "gt", "idx"]
    for i, row in enumerate(dpo):
        preference.validate_pair(row, "dpo", i)
        assert row["prompt"] == [{"role": "user", "content": question(row["idx"])}]
        assert row["gt"] == GT[row["idx"]]
        assert f"\\boxed{{{row['gt']}}}" in row["chosen"][-1]["content"]
        assert f"\\boxed{{{row['gt']}}}" not in row["rejected"][-1]["content"]
        assert row["chosen"][1]["content"].startswith("```output\n")  # observation turns stay
    assert sorted(dpo["idx"]) == ["0", "2"]
    kto = load_from_disk(str(out / "kto"))
    for i, row in enumerate(kto):
        preference.validate_unpaired(row, "kto", i)
    assert [r["label"] for r in kto] == [True, False, True, False]
    assert [r["completion"] for r in kto][:2] == [dpo[0]["chosen"], dpo[0]["rejected"]]


@pytest.mark.parametrize(("n", "rows"), [(1, 2), (3, 5), (8, 6)])
def test_pairs_per_prompt_ablation(runs, tmp_path, n, rows):
    # idx 0 keeps 2 correct x 2 incorrect, idx 2 keeps 1 x 2: min(n, |C x R|) pairs each.
    dpo, _, stats = pairs.build(config(runs, tmp_path / "o", pairs_per_prompt=n))
    assert len(dpo) == rows == stats["dpo"]["rows"]
    keys = [(json.dumps(r["chosen"]), json.dumps(r["rejected"])) for r in dpo]
    assert len(set(keys)) == len(keys)  # distinct pairs of the product, never the same one twice


def test_choose_pairs_semantics():
    rng = random.Random(0)
    zipped = choose_pairs(list("abcde"), list("vwxyz"), 3, rng)  # both have more than 3
    assert len(zipped) == 3
    assert len({c for c, _ in zipped}) == 3 and len({r for _, r in zipped}) == 3  # k-th with k-th
    drawn = choose_pairs(list("ab"), list("vwxyz"), 8, rng)  # 8 of the 10 pairs of the product
    assert len(drawn) == len(set(drawn)) == 8
    assert set(drawn) <= set(itertools.product("ab", "vwxyz"))
    assert len(choose_pairs(["a"], list("vw"), 3, rng)) == 2


def test_seeded_draw(runs, tmp_path):
    draws = {json.dumps(pairs.build(config(runs, tmp_path / "o", seed=s))[0]) for s in range(12)}
    again = json.dumps(pairs.build(config(runs, tmp_path / "o", seed=3))[0])
    assert again == json.dumps(pairs.build(config(runs, tmp_path / "o", seed=3))[0])
    assert len(draws) > 1  # the seed decides which pair is drawn


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_gives_identical_output(runs, tmp_path):
    out = tmp_path / "pairs"
    run_cli(runs, out)
    first = _digest(out)
    run_cli(runs, out)  # replaces its own earlier output
    assert _digest(out) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pairs.")]


def test_kto_from_all(runs, tmp_path):
    _, kto, stats = pairs.build(config(runs, tmp_path / "o", kto_from="all"))
    assert len(kto) == 19
    assert stats["kto"] == {"from": "all", "rows": 19, "prompts": 4, "desirable": 9, "desirable_length_capped": 0,
                            "undesirable": 10, "desirable_share": round(9 / 19, 6)}


def test_length_capped_correct_trajectory_is_chosen_unless_excluded(tmp_path):
    """A turn cut by the 512-token cap has no \\boxed{}; its answer is the last number of the cut-off
    turn. The reference labels by that answer alone (SPEC 1.4, 4.3): it may become the chosen side."""
    capped = solved("0", "cap", GT["0"])[:2] + [
        {"role": "assistant", "content": f"The output is {GT['0']}, so adding the next part gives"}]
    recs = [record("0", 0, capped, GT["0"], stop="max_tokens"), wrong("0", 1, "w")]
    path = write_run(tmp_path, "r", recs)
    dpo, kto, stats = pairs.build(PairsConfig(runs=[RunSpec(str(path))], output=str(tmp_path / "o")))
    assert [row["chosen"] for row in dpo] == [capped]
    assert stats["dpo"]["chosen_length_capped"] == 1 and stats["kto"]["desirable_length_capped"] == 1
    assert stats["filters"]["correct_length_capped"] == {"enabled": False, "removed": 0, "matched": 1}

    pairs.main([f"runs=[{{path: '{path}'}}]", f"output={tmp_path / 'x'}", "filters.correct_length_capped=true"])
    stats = json.loads((tmp_path / "x" / "stats.json").read_text())
    assert stats["dpo"]["rows"] == 0 and stats["dpo"]["chosen_length_capped"] == 0
    assert stats["filters"]["correct_length_capped"] == {"enabled": True, "removed": 1, "matched": 1}


def test_dedup_first_turn(tmp_path):
    # Same first assistant turn, different endings: 'trajectory' keeps both, 'first_turn' one.
    a = solved("0", "x", GT["0"])
    b = a[:2] + [{"role": "assistant", "content": f"So it is $\\boxed{{{GT['0']}}}$."}]
    recs = [record("0", 0, a, GT["0"]), record("0", 1, b, GT["0"]), wrong("0", 2, "w")]
    path = write_run(tmp_path, "r", recs)
    cfg = PairsConfig(runs=[RunSpec(str(path))], output=str(tmp_path / "o"))
    assert pairs.build(cfg)[2]["trajectories"]["duplicates_removed"] == 0
    cfg.dedup = "first_turn"
    assert pairs.build(cfg)[2]["trajectories"]["duplicates_removed"] == 1


def test_grader_choice(tmp_path):
    cur, prev = mixture()
    flipped = [score(r, strict=False if r["id"] == "1:0" else None) for r in cur]
    c = write_jsonl(tmp_path / "current.jsonl", cur)
    write_jsonl(tmp_path / "current.scores.jsonl", flipped)
    p = write_run(tmp_path, "previous", prev)
    assert pairs.build(config((c, p), tmp_path / "o"))[2]["prompts"]["with_pair"] == 2
    assert pairs.build(config((c, p), tmp_path / "o", grader="strict"))[2]["prompts"]["with_pair"] == 3
    with pytest.raises(SystemExit, match=r"current.scores.jsonl, line 1: field 'scores.lenient'"):
        pairs.main(argv_for((c, p), tmp_path / "o", "grader=lenient"))


def _fail(runs, tmp_path, capsys, *extra) -> str:
    with pytest.raises(SystemExit) as exc:
        pairs.main(argv_for(runs, tmp_path / "o", *extra))
    assert not (tmp_path / "o").exists()
    return str(exc.value.code)


def test_truncated_line(runs, tmp_path, capsys):
    cur, _ = runs
    with cur.open("a") as fh:
        fh.write('{"id": "9:0", "idx": "9", "sam')  # an interrupted writer
    msg = _fail(runs, tmp_path, capsys)
    assert f"{cur}, line 17" in msg and "not valid JSON" in msg
    stats = run_cli(runs, tmp_path / "ok", "--skip-bad-lines")
    assert stats["bad_lines_skipped"] == 1 and stats["bad_lines"] == {str(cur): [17]}
    assert stats["trajectories"]["used"] == 24


def test_missing_field(runs, tmp_path, capsys):
    cur, _ = runs
    lines = cur.read_text().splitlines()
    rec = json.loads(lines[4])
    del rec["pred"]
    lines[4] = json.dumps(rec)
    cur.write_text("\n".join(lines) + "\n")
    msg = _fail(runs, tmp_path, capsys)
    assert f"{cur}, line 5: field 'pred': missing" in msg
    stats = run_cli(runs, tmp_path / "ok", "skip_bad_lines=true")
    # The line is skipped, which leaves its score without a trajectory: both are counted.
    assert stats["bad_lines"] == {str(cur): [5], str(cur).replace(".jsonl", ".scores.jsonl"): [5]}


def test_grader_version_mismatch(runs, tmp_path, capsys):
    _, prev = runs
    scores_path = prev.with_name("previous.scores.jsonl")
    lines = scores_path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["grader_version"] = "g2"
    lines[2] = json.dumps(rec)
    scores_path.write_text("\n".join(lines) + "\n")
    msg = _fail(runs, tmp_path, capsys)
    assert f"{scores_path}, line 3: field 'grader_version': 'g2'" in msg and "current.scores.jsonl" in msg
    # Stale scores are refused even when bad lines are skipped.
    assert "'g2'" in _fail(runs, tmp_path, capsys, "--skip-bad-lines")
    msg = _fail(runs, tmp_path, capsys, "grader_version=g0")
    assert "current.scores.jsonl, line 1: field 'grader_version': 'g1', but the config expects 'g0'" in msg


def test_unjoined_records(runs, tmp_path, capsys):
    cur, _ = runs
    scores_path = cur.with_name("current.scores.jsonl")
    lines = scores_path.read_text().splitlines()
    scores_path.write_text("\n".join(lines[1:]) + "\n")
    assert f"{cur}, line 1: field 'id': '0:0' has no score in {scores_path}" in _fail(
        runs, tmp_path, capsys)
    extra = score(good("3", 9, "x"))
    scores_path.write_text("\n".join(lines + [json.dumps(extra)]) + "\n")
    assert f"{scores_path}, line 17: field 'id': '3:9' has no trajectory in {cur}" in _fail(
        runs, tmp_path, capsys)


def test_conflicting_ground_truth(runs, tmp_path, capsys):
    _, prev = runs
    lines = prev.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["gt"] = "13"
    lines[0] = json.dumps(rec)
    prev.write_text("\n".join(lines) + "\n")
    msg = _fail(runs, tmp_path, capsys)
    assert f"{prev}, line 1: field 'gt': '13' for idx '0'" in msg and "current.jsonl, line 1" in msg


def test_interrupted_write_leaves_no_half_dataset(runs, tmp_path, monkeypatch):
    out = tmp_path / "pairs"
    real = Dataset.save_to_disk

    def dies_on_kto(self, path, *a, **kw):
        if Path(path).name == "kto":
            raise KeyboardInterrupt
        return real(self, path, *a, **kw)

    monkeypatch.setattr(Dataset, "save_to_disk", dies_on_kto)
    with pytest.raises(KeyboardInterrupt):
        pairs.main(argv_for(runs, out))
    assert not out.exists()
    monkeypatch.setattr(Dataset, "save_to_disk", real)
    run_cli(runs, out)
    before = _digest(out)
    monkeypatch.setattr(Dataset, "save_to_disk", dies_on_kto)
    with pytest.raises(KeyboardInterrupt):
        pairs.main(argv_for(runs, out, "seed=5"))
    assert _digest(out) == before  # the earlier complete output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.jsonl", "current.scores.jsonl",
                                                          "pairs", "previous.jsonl", "previous.scores.jsonl"]


def test_refuses_to_replace_other_folders(runs, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "precious.txt").write_text("x")
    with pytest.raises(SystemExit, match="not a preference data set"):
        pairs.main(argv_for(runs, tmp_path / "o"))
    assert (tmp_path / "o" / "precious.txt").exists()


def test_config_errors(runs, tmp_path):
    with pytest.raises(SystemExit, match="filters.max_tokens needs the policy's tokenizer"):
        pairs.main(argv_for(runs, tmp_path / "o", "filters.max_tokens=2048"))
    with pytest.raises(SystemExit, match="pairs_per_prompt"):
        pairs.main(argv_for(runs, tmp_path / "o", "pairs_per_prompt=0"))
    cur, _ = runs
    with pytest.raises(SystemExit, match="listed twice"):
        pairs.main([f"runs=[{{path: '{cur}'}}, {{path: '{cur}'}}]", f"output={tmp_path / 'o'}"])

def test_unknown_key_names_the_nearest(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        pairs.main(argv_for(runs, tmp_path / "o", "filters.max_turn=true"))
    assert exc.value.code == 2
    assert "did you mean 'filters.max_turns'" in capsys.readouterr().err


def test_help_lists_fields(capsys):
    with pytest.raises(SystemExit) as exc:
        pairs.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in ("pairs_per_prompt", "kto_from", "filters.max_tokens", "filters.max_turns", "dedup"):
        assert name in text


def test_push_to_hub_is_optional(runs, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(Dataset, "push_to_hub", lambda self, repo, **kw: calls.append((repo, kw, len(self))))
    run_cli(runs, tmp_path / "o")
    assert calls == []
    run_cli(runs, tmp_path / "o", "push_to_hub=me/pairs")
    assert calls == [("me/pairs", {"config_name": "dpo"}, 2), ("me/pairs", {"config_name": "kto"}, 4)]


def test_shipped_configs_parse():
    folder = Path(pairs.__file__).parent / "configs"
    for name in ("pairs.yaml", "pairs_tiny.yaml"):
        data, lines = read_yaml(folder / name)
        build(PairsConfig, data, name, where=lines)


def test_pass_at_k_matches_enumeration():
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 4), (7, 3, 5)]:
        outcomes = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_tiny_world_conversations_with_token_limit(tmp_path):
    """SFT conversations of the tiny world as generations, through pairs_tiny.yaml and the
    2048-token style rule with a real chat template."""
    from transformers import AutoTokenizer

    world = Path(os.environ.get("TINY_WORLD", Path(__file__).resolve().parents[2] / "runs" / "test_world"))
    if not (world / "data" / "sft.jsonl").exists():
        pytest.skip(f"no tiny world at {world}: `bash scripts/test.sh` builds it")
    convs = [json.loads(x)["messages"] for x in (world / "data" / "sft.jsonl").open().readlines()[:30]]
    recs = []
    for i, msgs in enumerate(convs):
        gt = msgs[-1]["content"].split("boxed{")[1].split("}")[0]
        for s in range(4):
            turns = [dict(m) for m in msgs[1:]]
            if s % 2:  # a wrong final answer
                turns[-1]["content"] = f"The answer is $\\boxed{{{gt}1}}$."
            turns[0]["content"] = f"Attempt {s}. " + turns[0]["content"]  # distinct samples
            rec = {**record("0", s, solved("0", "x", "1"), "1"), "id": f"{i}:{s}", "idx": str(i),
                   "question": msgs[0]["content"], "gt": gt, "messages": [msgs[0], *turns],
                   "pred": gt if s % 2 == 0 else gt + "1"}
            recs.append(trajectory_format.validate(rec, "test"))
    path = write_run(tmp_path, "current", recs)
    tok = AutoTokenizer.from_pretrained(str(world / "model"))
    lengths = [len(tok.apply_chat_template(r["messages"], tokenize=True)["input_ids"]) for r in recs]
    limit = sorted(lengths)[len(lengths) // 2]
    out = tmp_path / "pairs"
    pairs.main(["--config", str(Path(pairs.__file__).parent / "configs" / "pairs_tiny.yaml"),
                f"runs=[{{path: '{path}', source: current}}]", f"output={out}",
                f"tokenizer={world / 'model'}", f"filters.max_tokens={limit}"])
    stats = json.loads((out / "stats.json").read_text())
    too_long = sum(n > limit for n in lengths)
    assert stats["filters"]["max_tokens"] == {"enabled": True, "removed": too_long, "matched": too_long}
    dpo = load_from_disk(str(out / "dpo"))
    assert len(dpo) == stats["prompts"]["with_pair"] > 0
    for i, row in enumerate(dpo):
        preference.validate_pair(row, "dpo", i)
        for side in ("chosen", "rejected"):
            ids = tok.apply_chat_template(row["prompt"] + row[side], tokenize=True)["input_ids"]
            assert len(ids) <= limit


def test_no_pairs_gives_empty_datasets_and_a_warning(tmp_path, capsys):
    path = write_run(tmp_path, "r", [good("1", s, f"g{s}") for s in range(3)])
    pairs.main([f"runs=[{{path: '{path}'}}]", f"output={tmp_path / 'o'}", "kto_from=all"])
    assert "the dpo data set is empty" in capsys.readouterr().err
    assert len(load_from_disk(str(tmp_path / "o" / "dpo"))) == 0
    kto = load_from_disk(str(tmp_path / "o" / "kto"))
    assert kto["label"] == [True, True, True]
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["sources"] == {"r": {"trajectories": 3, "correct": 3, "correct_share": 1.0,
                                      "pass_at_k": {"k": 3, "prompts": 1, "pass@1": 1.0, "pass@3": 1.0}}}
