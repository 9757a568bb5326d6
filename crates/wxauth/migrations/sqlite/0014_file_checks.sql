-- Image checks (issue 32): the trace id of WeChat's asynchronous check
-- (mediaCheckAsync) of an avatar or image, matched when WeChat pushes its
-- verdict; the file's status is pending until then, pass or rejected after.
ALTER TABLE files ADD COLUMN check_trace TEXT;
CREATE INDEX files_check_trace ON files (check_trace);
