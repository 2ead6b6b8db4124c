"""What the algorithm does: Lloyd's iterations for groups of centres (:mod:`.lloyd`), the
initialisations (:mod:`.initialisation`), mini-batch steps (:mod:`.minibatch`), all
written once against the data-source seam (:mod:`gpukmeans.sources`).

Restarts of one fit and the k's of a sweep are *groups*: they share every pass over the
rows. An iteration on rows held on a GPU is recorded once as a CUDA graph and replayed
(:mod:`.cuda_graph`); draws that must not depend on how rows are chunked use per-row
uniforms (:mod:`.uniforms`).
"""
