"""ARKit-52 blendshape names and conversions to the layouts other tools use.

Inside the model, blendshape motion is always ARKit-52 in Apple's ``ARFaceAnchor.BlendShapeLocation`` order.
Datasets and tools disagree on count and order (BEAT: 51 alphabetical names without ``tongueOut``; Live Link Face
CSV: PascalCase with two pairs swapped), so every conversion here goes **by name**, never by position.
"""

from __future__ import annotations

import numpy as np

from diffusiontalker.errors import DiffusionTalkerError

# Apple's enum order. "Left" is the subject's left.
ARKIT_52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

# BEAT's facial JSON layout: alphabetical, no tongueOut.
BEAT_51: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
    "noseSneerRight",
)

# The header Live Link Face writes (61 values after Timecode and BlendShapeCount). Note JawRight,JawLeft and
# MouthRight,MouthLeft appear in that order, swapped against Apple's enum.
LIVELINK_CSV_HEADER: tuple[str, ...] = (
    "Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft",
    "EyeLookUpLeft", "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight",
    "JawLeft", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft",
    "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper",
    "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft",
    "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight",
    "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight",
    "NoseSneerLeft", "NoseSneerRight", "TongueOut", "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw",
    "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)

ARKIT_INDEX: dict[str, int] = {n: i for i, n in enumerate(ARKIT_52)}

# Channel groups used by metrics, plots and the synthetic generator (selected by name).
MOUTH_CHANNELS: tuple[str, ...] = tuple(n for n in ARKIT_52 if n.startswith(("mouth", "jaw")) or n == "tongueOut")
UPPER_FACE_CHANNELS: tuple[str, ...] = tuple(n for n in ARKIT_52 if n.startswith(("eye", "brow")))
STOCHASTIC_CHANNELS: tuple[str, ...] = ("eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browOuterUpLeft",
                                         "browOuterUpRight", "browDownLeft", "browDownRight")


def to_pascal(name: str) -> str:
    """ARKit camelCase name -> the PascalCase name Live Link Face uses (``jawOpen`` -> ``JawOpen``)."""
    return name[:1].upper() + name[1:]


def from_pascal(name: str) -> str:
    """PascalCase Live Link name -> ARKit camelCase name."""
    return name[:1].lower() + name[1:]


def indices(names: tuple[str, ...] | list[str], of: tuple[str, ...] | list[str] = ARKIT_52) -> list[int]:
    """Positions of ``names`` inside ``of``; raises with the unknown names listed."""
    pos = {n: i for i, n in enumerate(of)}
    unknown = [n for n in names if n not in pos]
    if unknown:
        raise DiffusionTalkerError(f"unknown blendshape name(s) {unknown}; expected ARKit names such as 'jawOpen'")
    return [pos[n] for n in names]


def reorder(values: np.ndarray, src_names: list[str] | tuple[str, ...],
            dst_names: list[str] | tuple[str, ...] = ARKIT_52, fill: float = 0.0) -> np.ndarray:
    """Re-lay ``values`` (..., len(src_names)) as (..., len(dst_names)) matching channels BY NAME.

    Channels of ``dst_names`` missing from ``src_names`` (e.g. tongueOut from BEAT) are set to ``fill``;
    channels of ``src_names`` not in ``dst_names`` are dropped.
    Names are matched case-insensitively on the first letter so PascalCase (Live Link) also maps.
    """
    values = np.asarray(values)
    if values.shape[-1] != len(src_names):
        raise DiffusionTalkerError(
            f"values have {values.shape[-1]} channels but {len(src_names)} names were given")
    src = {from_pascal(n): i for i, n in enumerate(src_names)}
    out = np.full(values.shape[:-1] + (len(dst_names),), fill, dtype=values.dtype)
    for j, n in enumerate(dst_names):
        i = src.get(from_pascal(n))
        if i is not None:
            out[..., j] = values[..., i]
    return out
