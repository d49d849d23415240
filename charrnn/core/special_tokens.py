"""The three ids every tokenizer reserves, shared by the tokenizers and the models.

`<pad>` = 0 pads batches and is never predicted; `<unk>` = 1 stands for any unit outside the
vocabulary; `<eos>` = 2 ends every line (and, read first, starts one).
"""

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2
SPECIALS = (PAD, UNK, EOS)  # by id
