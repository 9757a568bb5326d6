// Where wxauth runs. `wxauth dev` listens here; in WeChat DevTools tick
// "Do not verify request domains" (urlCheck is off in project.config.json).
module.exports = {
  baseURL: 'http://127.0.0.1:8080',
};
