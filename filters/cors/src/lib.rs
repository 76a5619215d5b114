//! meshwall `cors` filter (being written).
