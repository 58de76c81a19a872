"""From a spec to things torch can run: the checkpoint or Hugging Face folder as an ``nn.Module``
(source.py, hf.py), inputs and PyTorch references (inputs.py), calibration samples (calibration.py,
calibration_images.py) and the image preprocessing the served ensemble also runs (preprocess.py).
"""
