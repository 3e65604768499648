"""Embeddings of every window of a dataset from a frozen SSAST model, as parquet (see `gtzan_hf.commands.embed`).

    python scripts/embed.py SSAST-Base-Patch-400 --dataset /data/gtzan --split fault-filtered --output_dir emb/base
    python scripts/embed.py runs/ssast-gtzan --dataset /data/gtzan --pooling patches --layer 6 --output_dir emb/l6

MODEL: a fine-tuned or converted SSAST folder or Hub id, a scripts/pretrain.py output, a transformers AST, an original
.pth or a released name (converted on the fly with --freq_stride/--time_stride/--max_length). Windows: the model's own
unless --crop_seconds/--eval_hop_seconds say otherwise. Arguments: `gtzan_hf.commands.embed.EmbedArguments` and
`gtzan_hf.data.DataConfig` (the split and window settings); `--help` lists them.
"""

from gtzan_hf.commands.embed import cli

if __name__ == "__main__":
    cli()
