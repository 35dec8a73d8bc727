// Every GraphQL operation the chat sends, with hand-written result types.
// Names and arguments follow ../../../schema.graphql (the API contract); the
// types could be generated with GraphQL Code Generator (see the README's
// "Schema tooling"), but a dozen small documents do not pay for the tool.
import { gql, type TypedDocumentNode } from '@apollo/client';

export interface UserRef {
  __typename?: 'User';
  id: string;
  username: string;
  displayName: string;
}

export interface Message {
  __typename?: 'Message';
  id: string;
  body: string;
  clientMessageId: string | null;
  createdAt: string;
  editedAt: string | null;
  deletedAt: string | null;
  sender: UserRef;
}

export interface ReadReceipt {
  user: { id: string };
  lastReadMessageId: string | null;
  readAt: string | null;
}

export interface ConversationSummary {
  __typename?: 'Conversation';
  id: string;
  kind: 'DIRECT' | 'GROUP';
  title: string | null;
  updatedAt: string;
  unreadCount: number;
  participants: UserRef[];
  lastMessage: Message | null;
  readReceipts: ReadReceipt[];
}

const USER_FIELDS = gql`
  fragment UserFields on User {
    id
    username
    displayName
  }
`;

const MESSAGE_FIELDS = gql`
  fragment MessageFields on Message {
    id
    body
    clientMessageId
    createdAt
    editedAt
    deletedAt
    sender {
      ...UserFields
    }
  }
  ${USER_FIELDS}
`;

// One shape for a conversation everywhere (list, header, inbox events,
// markConversationRead), so that Apollo's normalized cache keeps every view
// of Conversation:<id> current from whichever response came last.
const CONVERSATION_FIELDS = gql`
  fragment ConversationFields on Conversation {
    id
    kind
    title
    updatedAt
    unreadCount
    participants {
      ...UserFields
    }
    lastMessage {
      ...MessageFields
    }
    readReceipts {
      user {
        id
      }
      lastReadMessageId
      readAt
    }
  }
  ${USER_FIELDS}
  ${MESSAGE_FIELDS}
`;

export const REGISTER: TypedDocumentNode<
  { register: { token: string; user: UserRef } },
  { username: string; password: string; displayName?: string | null }
> = gql`
  mutation Register($username: String!, $password: String!, $displayName: String) {
    register(username: $username, password: $password, displayName: $displayName) {
      token
      user {
        ...UserFields
      }
    }
  }
  ${USER_FIELDS}
`;

export const LOGIN: TypedDocumentNode<
  { login: { token: string; user: UserRef } },
  { username: string; password: string }
> = gql`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) {
      token
      user {
        ...UserFields
      }
    }
  }
  ${USER_FIELDS}
`;

export const ME: TypedDocumentNode<{ me: UserRef }, Record<string, never>> = gql`
  query Me {
    me {
      ...UserFields
    }
  }
  ${USER_FIELDS}
`;

export const CONVERSATIONS: TypedDocumentNode<
  { conversations: { totalCount: number; edges: { node: ConversationSummary }[] } },
  Record<string, never>
> = gql`
  query Conversations {
    conversations(first: 100) {
      totalCount
      edges {
        node {
          ...ConversationFields
        }
      }
    }
  }
  ${CONVERSATION_FIELDS}
`;

export const CONVERSATION: TypedDocumentNode<
  { conversation: ConversationSummary | null },
  { id: string }
> = gql`
  query Conversation($id: ID!) {
    conversation(id: $id) {
      ...ConversationFields
    }
  }
  ${CONVERSATION_FIELDS}
`;

export interface MessagePage {
  conversation: {
    id: string;
    messages: {
      edges: { cursor: string; node: Message }[];
      pageInfo: { hasPreviousPage: boolean; startCursor: string | null };
    };
  } | null;
}

export const MESSAGES: TypedDocumentNode<MessagePage, { id: string; before?: string | null }> = gql`
  query Messages($id: ID!, $before: String) {
    conversation(id: $id) {
      id
      messages(last: 50, before: $before) {
        edges {
          cursor
          node {
            ...MessageFields
          }
        }
        pageInfo {
          hasPreviousPage
          startCursor
        }
      }
    }
  }
  ${MESSAGE_FIELDS}
`;

export const USERS: TypedDocumentNode<{ users: UserRef[] }, { search: string }> = gql`
  query Users($search: String) {
    users(search: $search, first: 10) {
      ...UserFields
    }
  }
  ${USER_FIELDS}
`;

export const CREATE_CONVERSATION: TypedDocumentNode<
  { createConversation: ConversationSummary },
  { participantIds: string[]; title?: string | null }
> = gql`
  mutation CreateConversation($participantIds: [ID!]!, $title: String) {
    createConversation(input: { participantIds: $participantIds, title: $title }) {
      ...ConversationFields
    }
  }
  ${CONVERSATION_FIELDS}
`;

export const SEND_MESSAGE: TypedDocumentNode<
  { sendMessage: Message },
  { conversationId: string; body: string; clientMessageId: string }
> = gql`
  mutation SendMessage($conversationId: ID!, $body: String!, $clientMessageId: String) {
    sendMessage(input: { conversationId: $conversationId, body: $body, clientMessageId: $clientMessageId }) {
      ...MessageFields
    }
  }
  ${MESSAGE_FIELDS}
`;

export const EDIT_MESSAGE: TypedDocumentNode<{ editMessage: Message }, { id: string; body: string }> = gql`
  mutation EditMessage($id: ID!, $body: String!) {
    editMessage(id: $id, body: $body) {
      ...MessageFields
    }
  }
  ${MESSAGE_FIELDS}
`;

export const DELETE_MESSAGE: TypedDocumentNode<{ deleteMessage: Message }, { id: string }> = gql`
  mutation DeleteMessage($id: ID!) {
    deleteMessage(id: $id) {
      ...MessageFields
    }
  }
  ${MESSAGE_FIELDS}
`;

export const MARK_READ: TypedDocumentNode<
  { markConversationRead: ConversationSummary },
  { conversationId: string }
> = gql`
  mutation MarkRead($conversationId: ID!) {
    markConversationRead(conversationId: $conversationId) {
      ...ConversationFields
    }
  }
  ${CONVERSATION_FIELDS}
`;

export const SET_TYPING: TypedDocumentNode<
  { setTyping: boolean },
  { conversationId: string; typing: boolean }
> = gql`
  mutation SetTyping($conversationId: ID!, $typing: Boolean!) {
    setTyping(conversationId: $conversationId, typing: $typing)
  }
`;

export type InboxEventType =
  | 'MESSAGE_CREATED'
  | 'MESSAGE_EDITED'
  | 'MESSAGE_DELETED'
  | 'CONVERSATION_CREATED'
  | 'PARTICIPANTS_CHANGED'
  | 'READ';

export const INBOX: TypedDocumentNode<
  {
    inbox: {
      type: InboxEventType;
      conversation: ConversationSummary;
      message: Message | null;
      user: UserRef | null;
    };
  },
  Record<string, never>
> = gql`
  subscription Inbox {
    inbox {
      type
      conversation {
        ...ConversationFields
      }
      message {
        ...MessageFields
      }
      user {
        ...UserFields
      }
    }
  }
  ${CONVERSATION_FIELDS}
`;

export const MESSAGE_EVENTS: TypedDocumentNode<
  { messageEvents: { type: 'CREATED' | 'EDITED' | 'DELETED'; cursor: string; message: Message } },
  { conversationId: string; after: string | null }
> = gql`
  subscription MessageEvents($conversationId: ID!, $after: String) {
    messageEvents(conversationId: $conversationId, after: $after) {
      type
      cursor
      message {
        ...MessageFields
      }
    }
  }
  ${MESSAGE_FIELDS}
`;

export const TYPING: TypedDocumentNode<
  { typing: { conversationId: string; typing: boolean; user: UserRef } },
  { conversationId: string }
> = gql`
  subscription Typing($conversationId: ID!) {
    typing(conversationId: $conversationId) {
      conversationId
      typing
      user {
        ...UserFields
      }
    }
  }
  ${USER_FIELDS}
`;
