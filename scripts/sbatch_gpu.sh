#!/bin/bash
# Train on a SLURM cluster with GPUs: 2 nodes x 4 GPUs, one process per GPU, DDP over NCCL
# (docs/cluster.md). Submit from the repository root with the environment that has sigmoidf1
# installed active; arguments are appended to the training command as Hydra overrides:
#   sbatch scripts/sbatch_gpu.sh data=reuters trainer.max_epochs=20
# NOT RUN: the machines this template is developed on have no GPU. Its CPU twin,
# scripts/sbatch_cpu.sh, runs in the tests on a local two-node cluster (scripts/slurm_local.sh).
#SBATCH --job-name=sigmoidf1
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=10:00:00
#SBATCH --signal=USR1@90
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm-%j.out
# --ntasks-per-node is trainer.devices and --nodes trainer.num_nodes below. --signal: SIGUSR1 90 s
# before the time limit, on which training saves, the job is requeued, and the restarted job (same
# id, so the same run directory) continues from that checkpoint. --open-mode=append: a restarted
# job appends to its log. The logs/ directory must exist (SLURM does not create it).
set -euo pipefail
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}  # CPU threads per process (data loading, etc.)
srun sigmoidf1-train trainer=ddp trainer.devices=4 trainer.num_nodes=2 \
    hydra.run.dir=logs/train/runs/${SLURM_JOB_ID} "$@"
