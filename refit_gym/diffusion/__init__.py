"""Diffusion backbones: schedules, denoisers, adapters (the backbone contract) and checkpoints."""
from refit_gym.diffusion.adapters import (BACKBONES, CFDiffAdapter, DenoiserAdapter, DiffRecAdapter,
                                          HistoryAdapter, TDiffRecAdapter, build_backbone, register_backbone)
from refit_gym.diffusion.checkpoint import CheckpointError, load_backbone, save_backbone
from refit_gym.diffusion.schedule import GaussianDiffusion, ScheduleConfig
# scenario backbones: importing them registers them in BACKBONES (needed by load_backbone)
from refit_gym.diffusion.dreamrec import DreamRecAdapter
from refit_gym.diffusion.social import SocialDiffRecAdapter

__all__ = ["BACKBONES", "CFDiffAdapter", "CheckpointError", "DenoiserAdapter", "DiffRecAdapter", "DreamRecAdapter",
           "GaussianDiffusion", "HistoryAdapter", "ScheduleConfig", "SocialDiffRecAdapter", "TDiffRecAdapter", "build_backbone", "load_backbone", "register_backbone", "save_backbone"]
