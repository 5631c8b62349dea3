"""Diffusion backbones: schedules, denoisers, adapters (the backbone contract) and checkpoints."""
from refit_gym.diffusion.adapters import (BACKBONES, CFDiffAdapter, DenoiserAdapter, DiffRecAdapter,
                                          HistoryAdapter, build_backbone, register_backbone)
from refit_gym.diffusion.checkpoint import CheckpointError, load_backbone, save_backbone
from refit_gym.diffusion.schedule import GaussianDiffusion, ScheduleConfig

__all__ = ["BACKBONES", "CFDiffAdapter", "CheckpointError", "DenoiserAdapter", "DiffRecAdapter", "GaussianDiffusion",
           "HistoryAdapter", "ScheduleConfig", "build_backbone", "load_backbone", "register_backbone", "save_backbone"]
