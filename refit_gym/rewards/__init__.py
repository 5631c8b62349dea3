"""Terminal rewards of the denoising MDP (see :mod:`refit_gym.rewards.base` for the contract)."""
from __future__ import annotations

from typing import Callable, Dict, Union

from refit_gym.data.dataset import InteractionData, as_interactions
from refit_gym.rewards.base import Reward, RewardState, split_heldout, split_latest
from refit_gym.rewards.collaborative import CollaborativeReward
from refit_gym.rewards.graph_score import GraphScoreReward
from refit_gym.rewards.naive import FunctionReward, ReconstructionReward, TopKReward
from refit_gym.rewards.sequential import SequentialCollaborativeReward, transition_graph

REWARDS: Dict[str, type] = {
    "refit": CollaborativeReward,
    "collaborative": CollaborativeReward,
    "graph-score": GraphScoreReward,
    "topk": TopKReward,
    "reconstruction": ReconstructionReward,
    "refit-seq": SequentialCollaborativeReward,
}


def make_reward(name_or_obj: Union[str, Reward, Callable], data: InteractionData, **kwargs) -> Reward:
    """A reward from a name ("refit"/"collaborative", "graph-score", "refit-seq", "topk", "reconstruction"), a :class:`Reward`
    (returned as is; then ``kwargs`` must be empty) or a callable ``f(scores, context) -> (B,)``
    (wrapped in :class:`FunctionReward`). ``kwargs`` go to the reward's constructor (e.g. ``device``).
    ``data`` is an InteractionData or a dataset with an ``interactions()`` view (SequentialData);
    "refit-seq" needs the latter (it reads the item order)."""
    if isinstance(name_or_obj, Reward):
        if kwargs:
            raise ValueError(f"reward {name_or_obj!r} is already built; cannot apply keyword arguments {sorted(kwargs)}")
        view = as_interactions(data)
        if name_or_obj.data is not view and (name_or_obj.n_users, name_or_obj.n_items) != (view.n_users, view.n_items):
            raise ValueError(f"reward {name_or_obj!r} was built for {name_or_obj.n_users} users x {name_or_obj.n_items} "
                             f"items, but the data has {view.n_users} x {view.n_items}")
        return name_or_obj
    if isinstance(name_or_obj, str):
        key = name_or_obj.lower()
        if key not in REWARDS:
            raise ValueError(f"unknown reward {name_or_obj!r}; known: {sorted(REWARDS)}")
        return REWARDS[key](data, **kwargs)
    if callable(name_or_obj):
        return FunctionReward(data, name_or_obj, **kwargs)
    raise TypeError(f"reward must be a name, a Reward or a callable, got {type(name_or_obj).__name__}")


__all__ = ["REWARDS", "CollaborativeReward", "FunctionReward", "GraphScoreReward", "ReconstructionReward", "Reward", "RewardState",
           "SequentialCollaborativeReward", "transition_graph",
           "TopKReward", "make_reward", "split_heldout", "split_latest"]
