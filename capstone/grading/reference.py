"""Grading the package's own reference on the built-in problem (``capstone.grading.problem``):
``python -m capstone.grading``. If the reference ever fails its own grader, either it or the
grader is wrong.
"""

import dataclasses
import tempfile


from capstone import captions as reference
from capstone.captions import PAD
from capstone.grading.grader import Grader
from capstone.grading.problem import builtin_configs, builtin_problem

def grade_reference(threshold=None, log=print):
    """Grade the package's own functions, decoder and sampler on the built-in problem -> the Grader."""
    import tensorflow as tf

    from capstone.decoder import Decoder
    from capstone.grading.sampler import reference_generate_caption, reference_one_step
    from capstone.support import run_dir as runs
    from capstone.support.tf_session import make_session
    from capstone.training import generate_batch, train

    (train_embeds, train_captions), (val_embeds, val_captions) = builtin_problem()
    model_config, training_config = builtin_configs()
    model_config = dataclasses.replace(model_config, img_embed_size=train_embeds.shape[1])
    grader = Grader()
    grader.grade_vocabulary(reference.generate_vocabulary, train_captions, min_count=training_config.min_count)
    vocab = reference.generate_vocabulary(train_captions, min_count=training_config.min_count)
    grader.grade_indexing(reference.caption_tokens_to_indices, train_captions, vocab)
    grader.grade_batching(reference.batch_captions_to_matrix, vocab[PAD])

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(training_config.seed)
        decoder = Decoder(len(vocab), vocab[PAD], model_config)  # the course's graph
        init = tf.compat.v1.global_variables_initializer()
        saver = tf.compat.v1.train.Saver()
    session = make_session(graph)
    session.run(init)
    grader.grade_decoder_shapes(decoder, session)
    grader.grade_random_init_loss(decoder, session)
    grader.grade_generate_batch(generate_batch)

    log(f"training the reference decoder on the built-in problem ({len(train_captions)} scenes)")
    with tempfile.TemporaryDirectory(prefix="capstone-grading-") as run_dir:
        train(run_dir, train_embeds, train_captions, val_embeds, val_captions, model_config, training_config,
              progress=False, log=log)
        runs.restore(saver, session, runs.best_checkpoint(run_dir))
        grader.grade_validation_loss(decoder, session, val_embeds, val_captions, vocab, threshold=threshold,
                                     data="shapes")
    session.close()
    grader.grade_sampler(reference_one_step, reference_generate_caption)
    return grader
