"""agegender: estimate age and gender from face photos; train, evaluate and compare the models."""
from .predictor import Face, Predictor

__version__ = "0.1.0"
__all__ = ["Face", "Predictor", "__version__"]
