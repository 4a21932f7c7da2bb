"""Converters of checkpoints written by other code bases."""
from .authors_checkpoint import (AuthorsNetwork, Conversion,
                                 authors_state_dict,
                                 convert_authors_checkpoint,
                                 convert_state_dict, read_network)

__all__ = [
    'AuthorsNetwork', 'Conversion', 'authors_state_dict',
    'convert_authors_checkpoint', 'convert_state_dict', 'read_network'
]
