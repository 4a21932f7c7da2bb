"""What a run's ``--launcher`` needs from its environment.

``--launcher pytorch`` (``tools/dist_train.sh``, ``torchrun``), ``slurm``
(``srun``, ``tools/slurm_train.sh``) and ``mpi`` (``mpirun``) read the rank
and the number of processes from variables their launcher sets, as
mmengine's ``init_dist`` does. :func:`check_launcher_environment` names a
variable that is missing (e.g. ``python tools/train.py CONFIG --launcher
pytorch`` started by hand), where ``init_dist`` would end in a ``KeyError``
traceback; :func:`launcher_rank` gives the process's global rank before
``init_dist`` runs; :func:`end_distributed_run` closes the run;
:func:`check_device` names a ``--device`` this machine does not have.
"""
import os

import torch

from .errors import ConfigError

#: Per launcher: the variables mmengine's init_dist reads, the first holding
#: the global rank, and how to start such a run.
LAUNCHERS = {
    'pytorch': (('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                 'MASTER_PORT'),
                'bash tools/dist_train.sh CONFIG NPROC (or torchrun '
                '--nproc-per-node NPROC tools/train.py CONFIG --launcher '
                'pytorch)'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'bash tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR (srun)'
              ),
    'mpi': (('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK',
             'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
            'mpirun -np NPROC python tools/train.py CONFIG --launcher mpi, '
            'with MASTER_ADDR set'),
}


def check_launcher_environment(launcher: str) -> None:
    """Raise :class:`ConfigError` if a variable ``launcher`` needs is not
    set (nothing for ``'none'``)."""
    if launcher not in LAUNCHERS:
        return
    variables, how = LAUNCHERS[launcher]
    missing = [name for name in variables if name not in os.environ]
    if missing:
        raise ConfigError(
            f'--launcher {launcher} reads the rank and the number of '
            f'processes from variables its launcher sets, and '
            f'{", ".join(missing)} '
            f'{"is" if len(missing) == 1 else "are"} not set: start the run '
            f'with {how}, or leave out --launcher for one process')


def launcher_rank(launcher: str) -> int:
    """Global rank of this process under ``launcher`` (0 for ``'none'`` or
    when the variable is not set)."""
    variables = LAUNCHERS.get(launcher, ((), ''))[0]
    if variables and os.environ.get(variables[0], '').isdigit():
        return int(os.environ[variables[0]])
    return 0


def end_distributed_run() -> bool:
    """Wait for every process of a distributed run, then close its process
    group (nothing without one). True if there was one to close.

    mmengine leaves the group open when training ends, so without the
    barrier a rank that is done exits while rank 0 still writes the last
    checkpoint. A process that closed a group can still crash in the
    interpreter's teardown: the tools then end it with
    :func:`msnet_plugin.compat.exit_skipping_finalization` (workaround 7).
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` if ``device`` (``--device``) is not a
    device name or names a CUDA device this machine does not have (torch
    would raise ``AssertionError: Torch not compiled with CUDA enabled``
    after building the model)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f'--device {device} is not a device name; use cpu '
                          'or cuda:N') from None
    if parsed.type != 'cuda':
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f'--device {device}: this machine has no CUDA '
                          f'device (torch {torch.__version__}); use --device '
                          'cpu')
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(f'--device {device}: this machine has {count} CUDA '
                          f'device(s), cuda:0 to cuda:{count - 1}')
