"""Rehearsals (scripts/rehearsal.py): a GPU config run on CPU with stand-in models and data, every
key, template and hand-off its own; the slow test runs the paper's main config end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402
import rehearsal  # noqa: E402

GPU_CONFIGS = [path for path, _ in rehearsal.gpu_configs()]
HUB_NAMES = ("google/", "RLHF4MATH/", "openai/", "hendrycks/", "mistralai/")


def dry_run(tmp_path, config, *overrides):
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), str(config), f"runs_dir={tmp_path}",
           "rehearse=true", *overrides, "--dry-run"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("config", GPU_CONFIGS, ids=lambda p: p.name)
def test_rehearsal_leaves_no_hub_reference_and_keeps_the_stage_configs(tmp_path, config):
    out = dry_run(tmp_path, config)
    notes, commands = out.split("\n# ", 1)
    for name in HUB_NAMES:
        assert name not in commands, f"{config.name}: a Hub reference left in the rehearsal:\n{commands}"
    cfg = pipeline.load(str(config), [])
    for stage_config in (cfg.sft.config, cfg.generate.config, cfg.train.config, cfg.evaluate.config):
        assert stage_config in commands or cfg.sft.model  # the config's own stage files, not copies
    assert f"{tmp_path}/rehearsal/{cfg.name}/" in commands  # never beside a real run
    if cfg.train.launcher:
        accelerate = yaml.safe_load(next((tmp_path / "rehearsal" / cfg.name / "world" / "accelerate").glob("*.yaml"))
                                    .read_text())
        # use_cpu in the file would make `accelerate launch` start one process: the trainer's use_cpu instead.
        assert accelerate["num_processes"] == 2 and accelerate["use_cpu"] is False
        assert accelerate["distributed_type"] == "MULTI_GPU" and "deepspeed_config" not in accelerate
        assert "accelerate" in notes and "num_processes: 8 -> 2" in notes and "use_cpu=true" in commands


def test_rehearsal_prints_each_gpu_only_setting_it_replaces(tmp_path):
    notes = dry_run(tmp_path, ROOT / "configs" / "gemma-1.1-it-7b_mdpo.yaml").split("\n# ", 1)[0]
    for expected in ("'google/gemma-1.1-7b-it' -> '{world}/models/gemma'", "attn_implementation: 'flash_attention_2'",
                     "'paged_adamw_32bit' -> 'adamw_torch'", "data_parallel_size: 8 ->",
                     "'RLHF4MATH/prompt_iter2' -> '{world}/data/prompt_iter2.jsonl'",
                     "'RLHF4MATH/SFT_510K' -> '{world}/data/SFT_510K.jsonl'", "HF_HUB_OFFLINE=1"):
        assert expected in notes, notes


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_precision_follows_the_cpu(tmp_path, monkeypatch, cpu_bf16):
    """Found rehearsing on an avx512_bf16 CPU: the SFT configs' `bf16: auto` was kept, axolotl found
    no GPU bf16 and chose fp16 (float != Half at the first step); `bf16: true` then failed in
    transformers, which allows bf16 on a CPU only with `use_cpu`, an argument axolotl does not pass."""
    monkeypatch.setattr(rehearsal, "cpu_bf16", lambda: cpu_bf16)
    cfg = pipeline.load(str(ROOT / "configs" / "gemma-2-it-9b_mdpo.yaml"), [f"runs_dir={tmp_path}", "rehearse=true"])
    assert yaml.safe_load((ROOT / cfg.sft.config).read_text())["bf16"] == "auto"
    rehearsed, _, notes = rehearsal.rehearse(cfg)
    assert "bf16=false" in rehearsed.sft.overrides
    assert any("sft bf16" in note for note in notes)
    # Training (TRL's trainers, our CLI) passes use_cpu: bf16 is kept where the CPU has it.
    assert "use_cpu=true" in rehearsed.train.overrides
    assert ("bf16=false" in rehearsed.train.overrides) is not cpu_bf16
    assert "dtype=float32" in rehearsed.train.overrides  # no DeepSpeed here: no fp32 master weights


def test_the_rehearsed_accelerate_file_starts_two_cpu_processes_for_the_trainer(tmp_path):
    """Found by reading a rehearsal's training log: with `use_cpu: true` in the file, `accelerate launch`
    took its simple launcher and ran ONE process, where the README said two. The rehearsed file keeps
    the GPU launcher; the trainer's use_cpu puts each of its processes on the CPU, over gloo."""
    cfg = pipeline.load(str(ROOT / "configs" / "gemma-1.1-it-7b_mdpo.yaml"), [f"runs_dir={tmp_path}", "rehearse=true"])
    rehearsed, _, _ = rehearsal.rehearse(cfg)
    script = tmp_path / "probe.py"
    script.write_text("import sys\nfrom transformers import TrainingArguments\n"
                      "a = TrainingArguments(output_dir=sys.argv[1], use_cpu=True, report_to=[])\n"
                      "print('probe', a.process_index, a.world_size, a.device.type, a.distributed_state.backend)\n")
    launcher = list(rehearsed.train.launcher)
    launcher[0] = str(ROOT / ".venv-alignment" / "bin" / launcher[0])
    out = subprocess.run([*launcher, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = sorted(line for line in out.stdout.splitlines() if line.startswith("probe"))
    assert probes == ["probe 0 2 cpu gloo", "probe 1 2 cpu gloo"], out.stdout + out.stderr[-2000:]


def test_family_of_hub_ids():
    assert rehearsal.family_of("google/gemma-1.1-7b-it") == "gemma"
    assert rehearsal.family_of("google/codegemma-1.1-7b-it") == "gemma"
    assert rehearsal.family_of("google/gemma-2-9b-it") == "gemma2"
    assert rehearsal.family_of("runs/models/mistral-7b-v0.3-pad") == "mistral"
    with pytest.raises(SystemExit, match="no stand-in family"):
        rehearsal.family_of("meta-llama/Llama-3-8B")


@pytest.mark.parametrize("name", sorted(rehearsal.FAMILIES))
def test_stand_in_tokenizer_renders_the_hub_template_with_single_special_tokens(tmp_path, name):
    from transformers import AutoConfig, AutoTokenizer

    family = rehearsal.FAMILIES[name]
    corpus = ["Ava has 5 apples.", "```python\nprint(5 - 3)\n```", "The answer is $\\boxed{2}$."] * 20
    rehearsal.build_model(name, family, rehearsal.build_tokenizer(family, corpus), tmp_path, seed=0)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    for special in (family.bos, family.eos, *family.specials):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    messages = [{"role": "user", "content": "Ava has 5 apples."}, {"role": "assistant", "content": "2"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text.startswith(family.bos) and ("<start_of_turn>model\n2<end_of_turn>" in text or "[/INST] 2</s>" in text)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # <bos> prepended on encode, as the Hub tokenizers do
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == family.arch
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    eos = generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    assert tok.convert_ids_to_tokens(eos) == list(family.generation_eos)


def test_stand_in_warm_up_learns_the_tool_conversations(tmp_path):
    """The warm-up is what lets a rehearsal's SFT produce tool calls, right and wrong answers, and so
    pairs: its next-token loss on the family's rendering of the conversations must fall."""
    from transformers import AutoModelForCausalLM

    family = rehearsal.FAMILIES["gemma"]
    rows = rehearsal.warm_up_data(tmp_path, seed=0, n=64)
    tokenizer = rehearsal.build_tokenizer(family, [m["content"] for r in rows for m in r["messages"]])
    rehearsal.build_model("gemma", family, tokenizer, tmp_path / "model", seed=0)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    first, last = rehearsal.warm(model, tokenizer, rows, steps=20, seed=0, batch=4)
    assert last < 0.7 * first


def test_a_hub_sft_model_stand_in_is_trained_on_the_sft_set(tmp_path, capsys):
    """Found by rehearse_all: the one-GPU configs start from the authors' SFT model; its stand-in, only
    warmed up, formed no pair in iteration 1, so iteration 1's training was skipped, not rehearsed.
    The stand-in is now also trained on the stand-in SFT set, as the SFT stage would have."""
    cfg = pipeline.load(str(ROOT / "configs" / "gemma-1.1-it-7b_mdpo_1gpu.yaml"),
                        [f"runs_dir={tmp_path}", "rehearse=true"])
    rehearsed, _, notes = rehearsal.rehearse(cfg)
    args = rehearsed.world.args
    assert args[args.index("--sft-steps") + 1] == str(rehearsal.RehearsalScale().hub_sft_steps)
    assert any("RLHF4MATH/Gemma-7B-it-SFT3epoch" in n and "steps on the SFT set" in n for n in notes), notes
    main_cfg = pipeline.load(str(ROOT / "configs" / "gemma-1.1-it-7b_mdpo.yaml"),
                             [f"runs_dir={tmp_path}", "rehearse=true"])
    assert "--sft-steps" not in rehearsal.rehearse(main_cfg)[0].world.args  # a local SFT stage trains it there

    rehearsal.main(["--out", str(tmp_path / "world"), "--family", "gemma", "--n-sft", "32", "--warm-up-steps", "0",
                    "--sft-steps", "3"])
    out = capsys.readouterr().out
    assert "rehearsal: the SFT set: 3 steps of 16 conversations" in out
    assert "random, then 3 steps of the SFT set)" in out


def test_the_rehearsal_scale_is_the_configs_rehearsal_section(tmp_path):
    """vLLM's CPU build runs data parallel 2 (two engines; requests routed by data_parallel_rank, the GPU
    node's path): the default. Every scale value is a `rehearsal.*` override of the pipeline config."""
    config = ROOT / "configs" / "gemma-1.1-it-7b_mdpo.yaml"
    notes = dry_run(tmp_path, config).split("\n# ", 1)[0]
    assert "generate backend.data_parallel_size: 8 -> 2" in notes and "prompts_per_iteration: -1 -> 16" in notes
    out = dry_run(tmp_path, config, "rehearsal.vllm_data_parallel=1", "rehearsal.prompts_per_iteration=8")
    notes, commands = out.split("\n# ", 1)
    assert "generate backend.data_parallel_size: 8 -> 1" in notes and "prompts_per_iteration: -1 -> 8" in notes
    assert "backend.data_parallel_size=1" in commands
    with pytest.raises(subprocess.CalledProcessError):
        dry_run(tmp_path, config, "rehearsal.vllm_data_paralel=1")  # a misspelt key is an error, not ignored


def test_a_run_on_another_runs_sft_model_builds_no_stand_in_base(tmp_path):
    """A variant that starts from its base's rehearsed SFT model (rehearse_all) uses the world's data only:
    no warm-up (2.5 min a run on 2 cores) and no Mistral padding step for a model nobody loads."""
    cfg = pipeline.load(str(ROOT / "configs" / "mistral-7b-v0.3_mkto.yaml"),
                        [f"runs_dir={tmp_path}", "rehearse=true", "sft.model={runs}/mistral-7b-v0.3_mdpo/sft/model"])
    args = rehearsal.rehearse(cfg)[0].world.args
    assert args[args.index("--warm-up-steps") + 1] == "0" and "--add-pad-token" not in args
    own = rehearsal.rehearse(pipeline.load(str(ROOT / "configs" / "mistral-7b-v0.3_mdpo.yaml"),
                                           [f"runs_dir={tmp_path}", "rehearse=true"]))[0].world.args
    assert own[own.index("--warm-up-steps") + 1] == "250" and "--add-pad-token" in own
