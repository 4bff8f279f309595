-- tb-bench: after gen_a.sql and gen_b.sql. Keys, indexes and foreign keys
-- as a real application has them, sequences moved past the generated ids,
-- the generators dropped, and last the marker that says this database is
-- complete (psql variable: spec).
SET client_min_messages = warning;
SET maintenance_work_mem = '256MB';

ALTER TABLE users ADD PRIMARY KEY (id);
ALTER TABLE posts ADD PRIMARY KEY (id);
ALTER TABLE comments ADD PRIMARY KEY (id);
ALTER TABLE likes ADD PRIMARY KEY (id);
ALTER TABLE cards ADD PRIMARY KEY (id);
ALTER TABLE titles ADD PRIMARY KEY (id);
ALTER TABLE sessions ADD PRIMARY KEY (session_key);
CREATE INDEX posts_user_id_idx ON posts (user_id);
CREATE INDEX comments_post_id_idx ON comments (post_id);
CREATE INDEX likes_post_id_idx ON likes (post_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- NOT VALID: checking millions of random rows would only cost time.
ALTER TABLE posts ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE comments ADD FOREIGN KEY (post_id) REFERENCES posts (id) NOT VALID;
ALTER TABLE comments ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE likes ADD FOREIGN KEY (post_id) REFERENCES posts (id) NOT VALID;
ALTER TABLE likes ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE cards ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE titles ADD FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;

SELECT setval(pg_get_serial_sequence('users', 'id'), max(id)) FROM users;
SELECT setval(pg_get_serial_sequence('posts', 'id'), max(id)) FROM posts;
SELECT setval(pg_get_serial_sequence('comments', 'id'), max(id)) FROM comments;
SELECT setval(pg_get_serial_sequence('likes', 'id'), max(id)) FROM likes;
SELECT setval(pg_get_serial_sequence('cards', 'id'), max(id)) FROM cards;
SELECT setval(pg_get_serial_sequence('titles', 'id'), max(id)) FROM titles;

DROP FUNCTION bench_title(int), bench_sentences(int), bench_words(int), bench_ja(int),
  bench_hex(int), bench_uuid(), bench_time(timestamptz, interval);

CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO bench_meta VALUES ('spec', :'spec');
CHECKPOINT;
