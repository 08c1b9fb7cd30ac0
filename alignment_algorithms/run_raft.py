"""RAFT training, one iteration: rejection-sampling fine-tuning on the correct trajectories, the
paper's Table 1 baseline (SPEC 5.3 `raft`; alignment_algorithms/raft_trainer.py).

    python alignment_algorithms/run_raft.py --config alignment_algorithms/configs/raft_tiny_cpu.yaml \
        model_name_or_path=M dataset_path=PAIRS/dpo output_dir=OUT [key=value ...]

The data is the preference stage's pairs, of which the chosen trajectories are trained; there is no
reference model. On GPUs, start the same command with
`accelerate launch --config_file alignment_algorithms/accelerate/zero2.yaml` instead of `python`.
Re-running resumes from the last checkpoint in OUT; a finished OUT makes it a no-op.
Overrides are dotted `key=value` with YAML values, as in every CLI here (formats/config.py);
`--help` lists every field.
"""

from alignment_algorithms.training_run import main

if __name__ == "__main__":
    main("raft")
