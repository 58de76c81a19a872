"""Create the example checkpoints (random, seeded weights) if they are missing.

`make repo` runs this first. Real users point the spec at their own checkpoints.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    import torch
    from safetensors.torch import save_file

    from examples.cnn import small_cnn
    from examples.vit import vit_b16

    out = HERE / "checkpoints"
    out.mkdir(exist_ok=True)
    vit = out / "vit_b16.pt"
    if not vit.exists():
        tmp = vit.with_suffix(".tmp")
        torch.save({"state_dict": vit_b16().state_dict()}, tmp)
        tmp.rename(vit)
        print(f"wrote {vit} ({vit.stat().st_size / 1e6:.0f} MB)")
    cnn = out / "small_cnn.safetensors"
    if not cnn.exists():
        tmp = cnn.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in small_cnn().state_dict().items()}, str(tmp))
        tmp.rename(cnn)
        print(f"wrote {cnn} ({cnn.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
