"""The ``experimental.equiscope`` architecture (metatrain imports it as
``metatrain.experimental.equiscope``, an alias of this package)."""

from .model import EquiscopeModel
from .trainer import Trainer

__model__ = EquiscopeModel
__trainer__ = Trainer
__capabilities__ = {
    "supported_devices": __model__.__supported_devices__,
    "supported_dtypes": __model__.__supported_dtypes__,
}

__authors__ = [("equiscope developers", "@equiscope")]
__maintainers__ = [("equiscope developers", "@equiscope")]
