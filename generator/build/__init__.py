"""The orchestrator: spec -> load -> stages -> variants -> render/validate -> repository (pipeline.py), and the
summary the CLI prints (summary.py).
"""
