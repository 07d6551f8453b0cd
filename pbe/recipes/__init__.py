"""Models trained here, each a recipe of stages run by `train.py experiment=<name>`:

- `small/`: the synthetic small model (coloured shapes on textures and photos), for quick ablations;
- `objects/`: the objects model (emoji cut-outs pasted into real photos), the default model;
- `autoencoder.py`: the KL autoencoder stage both train (no pretrained autoencoder can be fetched here);
- `stage_tools.py`: what the stages share (config sections, batch streams, frozen parts, export).

Each recipe keeps its data-specific tower, evaluation, report (`scorecard.py`) and demo beside its recipe.
"""
