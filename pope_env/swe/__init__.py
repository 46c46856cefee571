"""SWE-bench tasks: instances (official format and a local real-repository set), offline
repository builds, expert trajectories and instance validation.

Submodules are imported on use; ``import pope_env.swe`` stays light (no docker, no swebench).
"""

from pope_env.swe.instances import LOCAL_SET, LocalBuild, SdistSource, SWEInstance, load_instances
from pope_env.swe.trajectories import SUBMIT, TrajectoryStep, load_trajectories, load_trajectory

__all__ = [
    "LOCAL_SET",
    "LocalBuild",
    "SUBMIT",
    "SWEInstance",
    "SdistSource",
    "TrajectoryStep",
    "load_instances",
    "load_trajectories",
    "load_trajectory",
]
