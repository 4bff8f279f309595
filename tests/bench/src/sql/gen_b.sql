-- tb-bench: second generating session (users, comments, likes, cards,
-- sessions); runs beside gen_a.sql. psql variables: users, posts,
-- comments, likes, cards, sessions.
SET timezone = 'UTC';
SET client_min_messages = warning;

SELECT setseed(0.21);
INSERT INTO users (id, name, email, bio, created_at)
SELECT g, n,
  n || '@' || (ARRAY['example.com', 'example.jp', 'mail.example.net', 'toybox.example', 'gmail.example'])[1 + floor(random() * 5)::int],
  CASE WHEN random() < 0.75 THEN bench_sentences(1 + floor(random() * 3)::int) END,
  timestamptz '2023-01-01 00:00:00+00' + (g::float8 / :users) * interval '900 days' + random() * interval '6 hours'
FROM (
  SELECT g, trim(both '_' from regexp_replace(lower(bench_words(2)), '[^a-z0-9]+', '_', 'g'))
      || floor(random() * 10000)::int AS n
  FROM generate_series(1, :users) g
) s;

SELECT setseed(0.22);
INSERT INTO comments (id, post_id, user_id, body, created_at)
SELECT g, 1 + floor(random() * :posts)::bigint, 1 + floor(random() * :users)::bigint,
  CASE WHEN random() < 0.3 THEN
    (ARRAY['Nice!', 'Great job!', 'lol', 'Congrats!', 'I love this!', 'So cool!', 'Thanks!', 'Same here.', '+1', 'Wow!',
           'すごい！', 'かわいい！', 'おめでとう！', 'ありがとう！', 'いいね！', '草', 'Good luck!', 'Me too!', 'Haha', 'GG'])[1 + floor(random() * 20)::int]
  ELSE bench_sentences(1 + floor(random() * 2)::int) END,
  timestamptz '2023-01-01 00:00:00+00' + (g::float8 / :comments) * interval '900 days' + random() * interval '6 hours'
FROM generate_series(1, :comments) g;

SELECT setseed(0.23);
INSERT INTO likes (id, user_id, post_id, created_at)
SELECT g, 1 + floor(random() * :users)::bigint, 1 + floor(random() * :posts)::bigint,
  timestamptz '2023-01-01 00:00:00+00' + (g::float8 / :likes) * interval '900 days' + random() * interval '6 hours'
FROM generate_series(1, :likes) g;

SELECT setseed(0.24);
INSERT INTO cards (id, user_id, name, rarity, image, description, created_at)
SELECT g, 1 + floor(random() * :users)::bigint, bench_title(2 + floor(random() * 2)::int),
  (ARRAY['common', 'common', 'common', 'rare', 'rare', 'epic', 'legendary'])[1 + floor(random() * 7)::int],
  'cards/' || to_char(t, 'YYYY/MM') || '/' || bench_uuid() || '.png',
  bench_sentences(1 + floor(random() * 2)::int), t
FROM (SELECT g, bench_time('2023-01-01 00:00:00+00', '900 days') AS t FROM generate_series(1, :cards) g) s;

SELECT setseed(0.25);
INSERT INTO sessions (session_key, user_id, data, created_at, expires_at)
SELECT bench_hex(64),
  CASE WHEN random() < 0.9 THEN 1 + floor(random() * :users)::bigint END,
  jsonb_build_object(
    'ip', (ARRAY['203.0.113.', '198.51.100.', '192.0.2.', '10.0.'])[1 + floor(random() * 4)::int] || floor(random() * 255)::int,
    'user_agent', (ARRAY[
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1',
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
      'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36',
      'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
      'Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393'
    ])[1 + floor(random() * 6)::int],
    'csrf_token', bench_hex(32),
    'last_path', '/posts/' || (1 + floor(random() * :posts)::int),
    'lang', (ARRAY['ja', 'ja', 'ja', 'en'])[1 + floor(random() * 4)::int],
    'device_id', bench_uuid()),
  t, t + interval '14 days'
FROM (SELECT bench_time('2025-05-01 00:00:00+00', '200 days') AS t FROM generate_series(1, :sessions) g) s;
