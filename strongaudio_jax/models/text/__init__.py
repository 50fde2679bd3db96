"""Text architectures: the BERT-style text encoder (contrastive towers, MiniLM weights) and the
transformer decoder over audio tokens shared by PAR and captioning. Not audio encoders, so not
selectable as `model.name`; objectives build them."""
