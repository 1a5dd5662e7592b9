"""Reading and writing sgdml 1.0.x datasets, tasks and models (``.npz``).

The three file kinds are NumPy ``.npz`` archives tagged by the key ``type``
(``'d'``, ``'t'``, ``'m'``). Every reader treats a file as hostile: only
regular files are opened, sizes are bounded before anything is allocated,
and the few pickled keys of models are read with a restricted unpickler
(:mod:`amp.gdml.io.safe`), so a crafted file cannot run code.

Modules, one per format:

- :mod:`~amp.gdml.io.safe`: the bounded ``.npz`` reader and the restricted
  unpickler;
- :mod:`~amp.gdml.io.datasets`: datasets (validation, md5, files,
  :func:`dataset_from_traj`);
- :mod:`~amp.gdml.io.models`: tasks and models (validation, saving);
- :mod:`~amp.gdml.io.loading`: :func:`load_kind`, the one reader of the
  three kinds (``load_dataset``, ``load_task``, ``load_model`` and
  ``load_any`` are it with the kind filled in);
- :mod:`~amp.gdml.io.fields`: single fields of a loaded file
  (:func:`scalar`, :func:`energy_mode`);
- :mod:`~amp.gdml.io.names`: element symbols, XYZ files and the file names
  of sgdml runs.

Every public name is available here, as ``amp.gdml.io.<name>``. The
formats know no training or prediction: this package must not import the
rest of :mod:`amp.gdml`; it uses :mod:`amp.store` for safe files.
"""

from .datasets import (SGDML_FORMAT_VERSION, dataset_from_atoms,
                       dataset_from_traj, dataset_md5, save_dataset, save_npz,
                       validate_dataset)
from .fields import ENERGY_MODES, energy_mode, scalar
from .loading import (KINDS, load_any, load_dataset, load_kind, load_model,
                      load_task)
from .models import save_model, save_task, validate_model, validate_task
from .names import (generate_xyz_str, model_file_name, parse_list_or_range,
                    read_xyz, task_file_name, train_dir_name, write_geometry,
                    z_str_to_z, z_to_z_str)
from .safe import (SafeUnpickler, UnsafeFileError, load_npz, npz_to_dict,
                   open_regular_file, to_bytes, to_str)

__all__ = [
    "SGDML_FORMAT_VERSION",
    "UnsafeFileError",
    "SafeUnpickler",
    "load_npz",
    "npz_to_dict",
    "open_regular_file",
    "KINDS",
    "load_kind",
    "load_dataset",
    "load_task",
    "load_model",
    "load_any",
    "save_npz",
    "save_dataset",
    "save_task",
    "save_model",
    "dataset_md5",
    "validate_dataset",
    "validate_task",
    "validate_model",
    "dataset_from_atoms",
    "dataset_from_traj",
    "read_xyz",
    "write_geometry",
    "generate_xyz_str",
    "z_to_z_str",
    "z_str_to_z",
    "train_dir_name",
    "task_file_name",
    "model_file_name",
    "parse_list_or_range",
    "to_str",
    "to_bytes",
    "scalar",
    "ENERGY_MODES",
    "energy_mode",
]
