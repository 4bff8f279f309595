-- tb-bench: schema of a TOYBOX-like database and the text generators that
-- fill it. Run once per database, before gen_a.sql and gen_b.sql.
--
-- Text is random but deterministic: every generator draws from random(),
-- which each generating session seeds with setseed() first. Words come from
-- a vocabulary of about 300 words and common phrases, drawn with a skew
-- towards the first entries (like real word frequencies); some sentences
-- are Japanese, some are the stock lines that social posts repeat. The mix
-- gives `gzip -6` a ratio of about 0.33 on the whole dump.
SET client_min_messages = warning;

-- n entries of the vocabulary, separated by spaces.
CREATE FUNCTION bench_words(n int) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
DECLARE
  w text[] := string_to_array(
    'the|a|to|and|of|in|is|it|you|that|was|for|on|are|with|as|this|be|at|have|from|or|one|had|by|but|not|what|all|were|we|when|your|can|said|there|use|an|each|which|she|do|how|their|if|will|up|other|about|out|many|then|them|these|so|some|her|would|make|like|him|into|time|has|look|two|more|write|go|see|number|no|way|could|people|my|than|first|water|been|call|who|oil|its|now|find|long|down|day|did|get|come|made|may|part|'
    || 'game|play|card|level|score|friend|team|win|lose|new|old|fun|great|best|love|really|today|night|week|month|share|post|comment|thanks|awesome|cool|nice|good|bad|hard|easy|fast|slow|last|next|again|always|never|maybe|sure|yes|okay|lol|wow|hey|hello|guys|everyone|someone|anyone|player|players|games|cards|titles|toy|toys|build|built|try|tried|finally|almost|just|still|already|very|much|too|enough|quite|pretty|rather|'
    || 'boss|stage|map|world|quest|item|items|coin|coins|gem|gems|rare|epic|legendary|common|upgrade|unlock|unlocked|reward|rewards|event|events|season|ranking|rank|top|update|bug|fix|patch|server|lag|mobile|phone|tablet|screen|button|sound|music|art|design|character|characters|story|mode|puzzle|race|racing|jump|run|fight|battle|shoot|craft|trade|collect|collection|set|deck|draw|hand|turn|round|match|online|offline|weekend|morning|evening|school|work|home|kids|family|brother|sister|dad|mom|'
    || 'I think|in the|of the|on the|to the|this game|the new|thank you|thanks for sharing|I love this|can''t wait|for the first time|with my friends|last night|this weekend|the next stage|the final boss|a lot of|so much fun|to be honest|I don''t know|does anyone know|how do you|is it just me|it was|there is|there are|I got|we got|you can|I can''t|I want to|you have to|if you|at the end|in my opinion|by the way|as soon as possible|at least|one more time|all the time|right now|for a while|'
    || 'the rare card|my deck|the event|the ranking|the update|this season|the title|new title|my collection|play again|good luck|well done|see you|let me know|check it out|have fun|keep going|never give up',
    '|');
  out text := w[1 + floor(array_length(w, 1) * power(random(), 2.5))::int];
BEGIN
  FOR i IN 2..n LOOP
    out := out || ' ' || w[1 + floor(array_length(w, 1) * power(random(), 2.5))::int];
  END LOOP;
  RETURN out;
END $f$;

-- A Japanese sentence of n fragments.
CREATE FUNCTION bench_ja(n int) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
DECLARE
  w text[] := string_to_array(
    '今日は,新しい,カード,ゲーム,楽しい,ありがとう,すごい,遊んで,みました,友達と,一緒に,また,明日,頑張ります,最高,レベル,クリア,できた,難しい,簡単,'
    || 'イベント,限定,ガチャ,当たった,欲しい,おもちゃ,作って,みた,動画,写真,投稿,しました,よろしく,お願いします,面白い,かわいい,かっこいい,初めて,やっと,ついに,'
    || 'ランキング,一位,になった,アップデート,待って,います,週末,みんな,で,の,が,を,に,は,と,も,した,する,ですね,です,ました',
    ',');
  out text := '';
BEGIN
  FOR i IN 1..n LOOP
    out := out || w[1 + floor(random() * array_length(w, 1))::int];
  END LOOP;
  RETURN out || (ARRAY['。', '！', '？', '…'])[1 + floor(random() * 4)::int];
END $f$;

-- n sentences: mostly random English, some Japanese, some stock lines.
CREATE FUNCTION bench_sentences(n int) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
DECLARE
  stock text[] := ARRAY[
    'Thanks for playing!', 'Check out my new deck.', 'This is my favourite card so far.',
    'Does anyone want to trade?', 'I finally beat the final boss!', 'Can''t wait for the next event.',
    'Good luck everyone!', 'Please like and share if you enjoyed it.',
    'Let me know what you think in the comments.', 'I made this with my kids this weekend.',
    'The new update is really great.', 'Is the server down for anyone else?', 'Just unlocked a new title!',
    'My ranking went up again today.', 'Happy to be part of this community.',
    'Thank you so much for all the likes!', 'See you in the next round.',
    'Which card should I upgrade first?', 'I spent the whole evening on this level.',
    'Finally got the legendary card I wanted!', 'Here is my collection so far.',
    'Any tips for the puzzle stage?', 'The music in this game is amazing.',
    'My brother and I played this all night.', 'New high score, can you beat it?',
    'I love the art style of this one.', 'Still can''t get past stage 12.',
    'Welcome to all the new players!', 'Please fix the lag on mobile.', 'This season''s rewards look awesome.',
    '今日も一日お疲れさまでした。', '新しいカードが当たりました！', 'イベントお疲れさまでした！',
    'よろしくお願いします！', 'また遊びましょう！', 'ランキング一位になりました！',
    '限定ガチャ、やっと当たった！', '週末はみんなで遊びました。', 'アップデート楽しみです！',
    'いいねありがとうございます！'];
  out text := '';
  s text;
BEGIN
  FOR i IN 1..n LOOP
    IF random() < 0.3 THEN
      s := stock[1 + floor(random() * array_length(stock, 1))::int];
    ELSIF random() < 0.15 THEN
      s := bench_ja(4 + floor(random() * 8)::int);
    ELSE
      s := bench_words(5 + floor(random() * 12)::int);
      s := upper(left(s, 1)) || substr(s, 2)
        || (ARRAY['.', '.', '.', '!', '?', '...'])[1 + floor(random() * 6)::int];
    END IF;
    IF i > 1 THEN
      out := out || ' ';
    END IF;
    out := out || s;
  END LOOP;
  RETURN out;
END $f$;

-- A title: n words, first letter capitalised.
CREATE FUNCTION bench_title(n int) RETURNS text LANGUAGE sql VOLATILE AS $f$
  SELECT upper(left(t, 1)) || substr(t, 2) FROM (SELECT bench_words(n) AS t) x
$f$;

-- n random hexadecimal digits (md5 of random numbers).
CREATE FUNCTION bench_hex(n int) RETURNS text LANGUAGE sql VOLATILE AS $f$
  SELECT left(string_agg(md5(random()::text), ''), n) FROM generate_series(1, (n + 31) / 32)
$f$;

-- A version-4-looking UUID, drawn from random() so that it is reproducible.
CREATE FUNCTION bench_uuid() RETURNS text LANGUAGE sql VOLATILE AS $f$
  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
      || substr(h, 18, 3) || '-' || substr(h, 21, 12)
  FROM (SELECT md5(random()::text) AS h) x
$f$;

-- A random instant in [lo, lo + span).
CREATE FUNCTION bench_time(lo timestamptz, span interval) RETURNS timestamptz LANGUAGE sql VOLATILE AS $f$
  SELECT lo + random() * span
$f$;

CREATE TABLE users (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  name text NOT NULL,
  email text NOT NULL,
  bio text,
  created_at timestamptz NOT NULL
);
CREATE TABLE posts (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  user_id bigint NOT NULL,
  title text NOT NULL,
  slug text NOT NULL,
  body text NOT NULL,
  status text NOT NULL,
  like_count integer NOT NULL,
  comment_count integer NOT NULL,
  view_count integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz
);
CREATE TABLE comments (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  post_id bigint NOT NULL,
  user_id bigint NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE likes (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  user_id bigint NOT NULL,
  post_id bigint NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE cards (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  user_id bigint NOT NULL,
  name text NOT NULL,
  rarity text NOT NULL,
  image text NOT NULL,
  description text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE titles (
  id bigint GENERATED BY DEFAULT AS IDENTITY,
  user_id bigint NOT NULL,
  name text NOT NULL,
  description text NOT NULL,
  image text,
  awarded_at timestamptz NOT NULL
);
CREATE TABLE sessions (
  session_key character(64) NOT NULL,
  user_id bigint,
  data jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
