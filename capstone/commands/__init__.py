"""The jobs of ``python -m capstone``, one module each, in the order a newcomer uses them.

Each module has ``add_arguments(parser)`` and ``run(args)``; ``capstone.__main__`` imports only
the module of the command being run, so ``--help`` answers without loading TensorFlow.
This is the top of the house: it may import every other sub-package; nothing imports it.
"""

# name -> (module with add_arguments/run, one line of help)
COMMANDS = {
    "demo": ("capstone.commands.demo", "the whole pipeline offline on pictures of shapes: data, embeddings, "
                                       "training, metrics"),
    "caption": ("capstone.commands.caption", "caption images or precomputed embeddings with a trained run"),
    "embed": ("capstone.commands.embed", "your images (zip or folder) -> embedding pickles"),
    "split": ("capstone.commands.split", "split embedding pickles into train/val/test"),
    "train": ("capstone.commands.train", "train the decoder on image embeddings + captions"),
    "evaluate": ("capstone.commands.evaluate", "BLEU/METEOR/ROUGE-L/CIDEr of a run on captioned images"),
    "serve": ("capstone.web.cli", "web page + JSON API: caption images, search a folder of images by words"),
    "export": ("capstone.commands.export", "a run as a SavedModel (image bytes -> captions) and, with --tflite, TFLite"),
}
