-- The same number as PostgreSQL's 0010, which stores sealed files without trying to compress
-- them; SQLite never compresses, so there is nothing to change here.
SELECT 1;
