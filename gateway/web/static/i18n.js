// The interface's words in English and Simplified Chinese, chosen from the browser's
// languages.
const words = {
  en: {
    "nav.chat": "Chat", "nav.knowledge": "Knowledge", "nav.keys": "Keys", "nav.signout": "Sign out",
    "signin.title": "Sign in", "signup.title": "Sign up", "field.name": "Name", "field.password": "Password",
    "field.invite": "Invitation code", "signin.submit": "Sign in", "signup.submit": "Create account",
    "signin.toSignup": "No account? Sign up", "signup.toSignin": "Have an account? Sign in",
    "chat.new": "New chat", "chat.placeholder": "Ask a question…", "chat.send": "Send", "chat.stop": "Stop",
    "chat.model": "Model", "chat.kb": "Knowledge base", "chat.noKb": "None", "chat.sources": "Sources",
    "chat.empty": "No conversations yet.", "chat.delete": "Delete", "chat.rename": "Rename", "chat.search": "Search titles",
    "chat.reconnecting": "Connection lost; reconnecting…", "chat.untitled": "New conversation",
    "chat.regenerate": "Regenerate", "chat.earlier": "Earlier answer", "chat.toolCall": "Called", "chat.toolResult": "Tool result", "chat.writing": "An answer is still being written…",
    "kb.title": "Knowledge bases", "kb.create": "Create", "kb.name": "Name", "kb.delete": "Delete",
    "kb.upload": "Drop files here or choose them", "kb.documents": "Documents", "kb.search": "Search",
    "kb.searchPlaceholder": "What does retrieval find?", "kb.status.pending": "pending",
    "kb.status.indexed": "indexed", "kb.status.failed": "failed",
    "keys.title": "API keys", "keys.create": "Create a key", "keys.name": "Key name", "keys.revoke": "Revoke",
    "keys.shown": "Copy this key now: it is not shown again.", "keys.signoutEverywhere": "Sign out everywhere",
    "error.generic": "Something went wrong.",
    "nav.admin": "Admin", "admin.models": "Models", "admin.name": "Name", "admin.backend": "Backend", "admin.source": "Source",
    "admin.state": "State", "admin.replicaList": "Replicas", "admin.actions": "Actions", "admin.replicas": "Replicas",
    "admin.scale": "Scale", "admin.remove": "Remove", "admin.addTitle": "Add a model", "admin.add": "Add",
    "admin.entry": "A models entry, as JSON", "admin.badJSON": "That is not JSON.", "admin.invites": "Invitations",
    "admin.invite": "Invite", "admin.isAdmin": "admin", "admin.inviteShown": "Give this code to the person invited: it is shown once.",
    "admin.edit": "Edit", "admin.replace": "Replace", "admin.replaceTitle": "Replace", "admin.cancel": "Cancel",
    "admin.users": "Users", "admin.password": "Password", "admin.keyCount": "Keys", "admin.sessions": "Sessions",
    "admin.lastUsed": "Last active", "admin.keys": "Keys", "admin.signoutUser": "Sign out everywhere", "admin.more": "More",
    "admin.revoked": "revoked", "admin.noKeys": "No API keys.", "admin.usage": "Usage", "admin.period": "Period",
    "admin.days": "last {n} days", "admin.user": "User", "admin.model": "Model", "admin.requests": "Requests",
    "admin.prompt": "Prompt tokens", "admin.completion": "Completion tokens", "admin.total": "Total", "admin.noUsage": "No requests in this period.",
  },
  "zh-CN": {
    "nav.chat": "对话", "nav.knowledge": "知识库", "nav.keys": "密钥", "nav.signout": "退出",
    "signin.title": "登录", "signup.title": "注册", "field.name": "用户名", "field.password": "密码",
    "field.invite": "邀请码", "signin.submit": "登录", "signup.submit": "创建账号",
    "signin.toSignup": "没有账号？注册", "signup.toSignin": "已有账号？登录",
    "chat.new": "新对话", "chat.placeholder": "输入问题…", "chat.send": "发送", "chat.stop": "停止",
    "chat.model": "模型", "chat.kb": "知识库", "chat.noKb": "不使用", "chat.sources": "来源",
    "chat.empty": "还没有对话。", "chat.delete": "删除", "chat.rename": "重命名", "chat.search": "搜索标题",
    "chat.reconnecting": "连接已断开，正在重连…", "chat.untitled": "新对话",
    "chat.regenerate": "重新生成", "chat.earlier": "之前的回答", "chat.toolCall": "调用", "chat.toolResult": "工具结果", "chat.writing": "回答仍在生成中…",
    "kb.title": "知识库", "kb.create": "创建", "kb.name": "名称", "kb.delete": "删除",
    "kb.upload": "把文件拖到这里，或选择文件", "kb.documents": "文档", "kb.search": "检索",
    "kb.searchPlaceholder": "看看检索会找到什么", "kb.status.pending": "处理中",
    "kb.status.indexed": "已索引", "kb.status.failed": "失败",
    "keys.title": "API 密钥", "keys.create": "创建密钥", "keys.name": "密钥名称", "keys.revoke": "吊销",
    "keys.shown": "请现在复制这个密钥：它不会再次显示。", "keys.signoutEverywhere": "退出所有设备",
    "error.generic": "出错了。",
    "nav.admin": "管理", "admin.models": "模型", "admin.name": "名称", "admin.backend": "后端", "admin.source": "来源",
    "admin.state": "状态", "admin.replicaList": "副本", "admin.actions": "操作", "admin.replicas": "副本数",
    "admin.scale": "调整", "admin.remove": "移除", "admin.addTitle": "添加模型", "admin.add": "添加",
    "admin.entry": "模型配置（JSON）", "admin.badJSON": "这不是 JSON。", "admin.invites": "邀请",
    "admin.invite": "邀请", "admin.isAdmin": "管理员", "admin.inviteShown": "请把这个邀请码交给受邀者：它只显示一次。",
    "admin.edit": "编辑", "admin.replace": "替换", "admin.replaceTitle": "替换", "admin.cancel": "取消",
    "admin.users": "用户", "admin.password": "密码", "admin.keyCount": "密钥", "admin.sessions": "会话",
    "admin.lastUsed": "最近活动", "admin.keys": "密钥", "admin.signoutUser": "退出所有设备", "admin.more": "更多",
    "admin.revoked": "已吊销", "admin.noKeys": "没有 API 密钥。", "admin.usage": "用量", "admin.period": "时间段",
    "admin.days": "最近 {n} 天", "admin.user": "用户", "admin.model": "模型", "admin.requests": "请求数",
    "admin.prompt": "提示词元", "admin.completion": "生成词元", "admin.total": "合计", "admin.noUsage": "这段时间没有请求。",
  },
};

export const lang = (navigator.languages || [navigator.language || "en"])
  .map((l) => (l.toLowerCase().startsWith("zh") ? "zh-CN" : l.toLowerCase().startsWith("en") ? "en" : null))
  .find(Boolean) || "en";

// t is the word for key in the page's language.
export function t(key) {
  return words[lang][key] ?? words.en[key] ?? key;
}

// translate fills every [data-i18n] element under root.
export function translate(root) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}
