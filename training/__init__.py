"""Training and synthesis for the demo model: a small model of the real class (EncDecRNNTBPEModelWithPrompt) trained
on synthetic espeak-ng speech. A separate project beside the transcription packages: not installed with them (see
pyproject's packages), run from the repository root with `python -m training.<module>`.

    synth_text         sentences from per-language templates
    synth_speech       espeak-ng speech, manifests, held-out sentences and voices
    recipe             the model, the RNNT loss, the data, the training loop, the evaluation
    train_demo_model   the job: train, save the .nemo, evaluate
"""
