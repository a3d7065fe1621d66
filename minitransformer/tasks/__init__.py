"""The applications of the same Transformer, each trained from scratch with the shared loop (loop.fit):
translation (encoder-decoder), text classification (encoder) and image classification (ViT). Each module
holds its data, model builder, train, evaluate and predict; the command line reaches them as
`minitransformer translate|classify|vit ...`."""
