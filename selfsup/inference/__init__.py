"""Using a trained run.

    fill_mask.py   load a pretrained run (BERT or GPT); fill [MASK] tokens with a BERT run
    generate.py    text from a GPT run: greedy, temperature, top-k, top-p, KV cache, streaming
    answer.py      a fine-tuned run (or a Hugging Face QA folder): labels, tags, answer spans

Each module imports torch and the model code itself; importing this package costs nothing.
"""
