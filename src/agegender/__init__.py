"""agegender: estimate age and gender from face images; train, evaluate and compare the models."""
__version__ = "0.1.0"
