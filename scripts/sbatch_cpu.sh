#!/bin/bash
# Train on a SLURM cluster without GPUs: 2 nodes x 1 process each, DDP over gloo (docs/cluster.md).
# Submit from the repository root with the environment that has sigmoidf1 installed active;
# arguments are appended to the training command as Hydra overrides:
#   sbatch scripts/sbatch_cpu.sh trainer.max_epochs=5 loss=bce
# The GPU form of this script is scripts/sbatch_gpu.sh.
#SBATCH --job-name=sigmoidf1
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --signal=USR1@90
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm-%j.out
# --ntasks-per-node is trainer.devices and --nodes trainer.num_nodes below. --signal: SIGUSR1 90 s
# before the time limit, on which training saves, the job is requeued, and the restarted job (same
# id, so the same run directory) continues from that checkpoint. --open-mode=append: a restarted
# job appends to its log. The logs/ directory must exist (SLURM does not create it).
set -euo pipefail
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}  # torch threads per process: the CPUs SLURM gave it
srun sigmoidf1-train trainer=ddp_cpu trainer.devices=1 trainer.num_nodes=2 \
    hydra.run.dir=logs/train/runs/${SLURM_JOB_ID} "$@"
