"""Terminal rewards of the denoising MDP (see :mod:`refit_gym.rewards.base` for the contract)."""
from __future__ import annotations

from typing import Callable, Dict, Union

from refit_gym.data.dataset import InteractionData
from refit_gym.rewards.base import Reward, RewardState, split_heldout
from refit_gym.rewards.collaborative import CollaborativeReward
from refit_gym.rewards.naive import FunctionReward, ReconstructionReward, TopKReward

REWARDS: Dict[str, type] = {
    "refit": CollaborativeReward,
    "collaborative": CollaborativeReward,
    "topk": TopKReward,
    "reconstruction": ReconstructionReward,
}


def make_reward(name_or_obj: Union[str, Reward, Callable], data: InteractionData, **kwargs) -> Reward:
    """A reward from a name ("refit"/"collaborative", "topk", "reconstruction"), a :class:`Reward`
    (returned as is; then ``kwargs`` must be empty) or a callable ``f(scores, context) -> (B,)``
    (wrapped in :class:`FunctionReward`). ``kwargs`` go to the reward's constructor (e.g. ``device``)."""
    if isinstance(name_or_obj, Reward):
        if kwargs:
            raise ValueError(f"reward {name_or_obj!r} is already built; cannot apply keyword arguments {sorted(kwargs)}")
        if name_or_obj.data is not data and (name_or_obj.n_users, name_or_obj.n_items) != (data.n_users, data.n_items):
            raise ValueError(f"reward {name_or_obj!r} was built for {name_or_obj.n_users} users x {name_or_obj.n_items} "
                             f"items, but the data has {data.n_users} x {data.n_items}")
        return name_or_obj
    if isinstance(name_or_obj, str):
        key = name_or_obj.lower()
        if key not in REWARDS:
            raise ValueError(f"unknown reward {name_or_obj!r}; known: {sorted(REWARDS)}")
        return REWARDS[key](data, **kwargs)
    if callable(name_or_obj):
        return FunctionReward(data, name_or_obj, **kwargs)
    raise TypeError(f"reward must be a name, a Reward or a callable, got {type(name_or_obj).__name__}")


__all__ = ["REWARDS", "CollaborativeReward", "FunctionReward", "ReconstructionReward", "Reward", "RewardState",
           "TopKReward", "make_reward", "split_heldout"]
