"""Jobs: the only modules that read data.source and join several layers (run.py dispatches to synthetic.py,
iphone.py, prompt.py; ablate.py is experiments.ablate)."""
