-- tb-bench: first generating session (posts, titles); runs beside gen_b.sql.
-- psql variables: users, posts, titles. Each table starts from its own
-- seed, so the data does not depend on how the two sessions interleave.
SET timezone = 'UTC';
SET client_min_messages = warning;

SELECT setseed(0.11);
INSERT INTO posts (id, user_id, title, slug, body, status, like_count, comment_count, view_count, created_at, updated_at)
SELECT g, u, title,
  g || '-' || trim(both '-' from regexp_replace(lower(title), '[^a-z0-9]+', '-', 'g')),
  bench_sentences(2 + floor(random() * 7)::int),
  CASE WHEN random() < 0.9 THEN 'published' WHEN random() < 0.5 THEN 'draft' ELSE 'hidden' END,
  floor(random() * random() * 500)::int,
  floor(random() * random() * 40)::int,
  floor(random() * 20000)::int,
  t,
  CASE WHEN random() < 0.2 THEN t + random() * interval '30 days' END
FROM (
  SELECT g, 1 + floor(random() * :users)::bigint AS u, bench_title(3 + floor(random() * 6)::int) AS title,
    timestamptz '2023-01-01 00:00:00+00' + (g::float8 / :posts) * interval '900 days'
      + random() * interval '6 hours' AS t
  FROM generate_series(1, :posts) g
) s;

SELECT setseed(0.12);
INSERT INTO titles (id, user_id, name, description, image, awarded_at)
SELECT g, 1 + floor(random() * :users)::bigint, bench_title(2 + floor(random() * 3)::int), bench_sentences(1),
  CASE WHEN random() < 0.7 THEN 'titles/' || bench_uuid() || '.png' END,
  bench_time('2023-01-01 00:00:00+00', '900 days')
FROM generate_series(1, :titles) g;
