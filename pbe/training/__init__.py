"""Training Paint by Example with Lightning + Hydra: `train.py` composes `configs/train.yaml` and calls `run.train`.

- `module.py`: the LightningModule (the paper's objective, CFG dropout, AdamW with warm-up, EMA, non-finite guard);
- `datamodule.py`: the LightningDataModule over `pbe.data` datasets (epoch passed on, one torch thread per worker);
- `callbacks.py`: sample grids, throughput, epoch bookkeeping;
- `model_factory.py`: the model from `cfg.model` (random, SD warm start, a Paint-by-Example checkpoint, component files);
- `run.py`: stages (`diffusion`, and the small model's `autoencoder`, `vision`, `small`), trainer, loggers;
- `export.py`: trained weights from a Lightning checkpoint to the native, diffusers or original layout.
"""
