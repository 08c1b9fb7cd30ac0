"""M-KTO training, one iteration (paper §3.1; SPEC 5).

    python alignment_algorithms/run_mkto.py --config alignment_algorithms/configs/mkto_tiny_cpu.yaml \
        model_name_or_path=M dataset_path=PAIRS/kto output_dir=OUT [ref_model_name_or_path=R] [key=value ...]

On GPUs, start the same command with
`accelerate launch --config_file alignment_algorithms/accelerate/zero2.yaml` instead of `python`.
Re-running resumes from the last checkpoint in OUT; a finished OUT makes it a no-op.
Overrides are dotted `key=value` with YAML values, as in every CLI here (formats/config.py);
`--help` lists every field.
"""

from alignment_algorithms.training_run import main

if __name__ == "__main__":
    main("mkto")
