//! meshwall `access` filter (being written).
