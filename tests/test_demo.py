from pbe import demo


def test_demo_runs_on_tiny_config(capsys):
    result = demo.main(["--tiny", "--latent-size", "8"])
    out = capsys.readouterr().out
    assert "unet" in out and "One UNet forward" in out and "(1, 4, 8, 8)" in out
    assert result["unet"] > 0 and result["forward_s"] > 0


def test_demo_rejects_latent_size_the_unet_cannot_downsample():
    import pytest

    with pytest.raises(ValueError, match="multiples of 2"):
        demo.main(["--tiny", "--latent-size", "7"])


def test_demo_help_describes_what_it_does_and_promises_nothing(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        demo.main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "parameter count" in text and "sample.py" in text
    assert "land" not in text and "will " not in text
