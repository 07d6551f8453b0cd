"""The objects model: trained here on emoji cut-outs pasted into real photos (`experiment=objects`,
`make train-objects`), its contrastive vision tower, the separate judge that scores it, and its report."""
