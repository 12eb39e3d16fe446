"""Experience storage: replay buffers, logged-episode datasets, their files and diagnostics."""

from heron.data.dataset import (
                                DeviceDataset,
                                EpisodeDataset,
                                concatenate,
                                from_episodes,
                                gather_transitions,
                                sample_indices,
                                sample_transitions,
)
from heron.data.minari_io import (
                                default_datasets_root,
                                import_d4rl,
                                load_dataset,
                                resolve_dataset_path,
                                save_dataset,
)

__all__ = ["EpisodeDataset", "DeviceDataset", "from_episodes", "concatenate", "sample_indices", "sample_transitions",
           "gather_transitions", "load_dataset", "save_dataset", "import_d4rl", "default_datasets_root",
           "resolve_dataset_path"]
