//! What turns embeddings into topics: the taxonomy, heads and their training and calibration,
//! model bundles, language identification and the labelling of one article.

pub mod bundle;
pub mod classify;
pub mod defaults;
pub mod fit;
pub mod head;
pub mod lang;
pub mod lexical;
pub mod load;
pub mod logistic;
pub mod probes;
pub mod taxonomy;
pub mod train;
