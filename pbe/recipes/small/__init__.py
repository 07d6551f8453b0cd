"""The small model: trained here on synthetic scenes (`experiment=small`, `make train-small`); its vision tower,
held-out scenes, shape classifier, evaluation, report and demo."""
