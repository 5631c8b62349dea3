"""refit-gym: reinforcement-learning fine-tuning of diffusion recommenders."""
__version__ = "0.1.0"
