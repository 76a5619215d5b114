//! meshwall `apikey` filter (being written).
