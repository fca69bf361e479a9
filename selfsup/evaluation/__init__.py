"""Judging a trained run without training it further.

    probe.py       frozen image features with few labels: linear probe and k-NN, the table
    probe_run.py   `selfsup probe RUN`: a SimCLR/BYOL run next to random init and raw pixels
    icl.py         a GPT run's in-context learning of a labelled task (`selfsup icl`)

Each module imports torch and the model code itself; importing this package costs nothing.
"""
