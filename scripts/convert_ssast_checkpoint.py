"""
Convert an original SSAST/AST checkpoint or a transformers AST model into an SSAST folder for `from_pretrained`.

    python scripts/convert_ssast_checkpoint.py SSAST-Base-Patch-400.pth ssast-base-patch \\
        --freq_stride 10 --time_stride 10 --max_length 1024 --num_labels 10

CHECKPOINT: a released self-supervised checkpoint (SSAST-{Base,Small,Tiny}-{Patch,Frame}-{250,400}.pth), a fine-tuned
checkpoint saved by the original SSAST/AST code, or a transformers ASTForAudioClassification folder or Hub id
(e.g. MIT/ast-finetuned-audioset-10-10-0.4593). See `gtzan_hf.models.convert`.
"""

from gtzan_hf.commands.convert import cli

if __name__ == "__main__":
    cli()
